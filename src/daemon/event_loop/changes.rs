//! What the loop does about what the watcher hears, and about the watcher itself: changes
//! routed to actions (gathering the facts [`routing`] asks for first), the pause marker,
//! the canary, notices of lost events, and data_dir replaced.

use std::path::Path;
use std::time::{Instant, SystemTime};

use crossbeam_channel::Receiver;

use super::super::routing::{self, Facts, Route, Wake};
use super::super::self_report::{CanaryMark, CanaryStatus};
use super::Daemon;
use crate::model::event_kind::EventKind;
use crate::model::scope::Scope;
use crate::watch::{Change, Notice};

impl Daemon {
    /// Takes `first` and every change already queued behind it (a storm arrives as many).
    pub(super) fn on_changes(&mut self, first: Change, queue: &Receiver<Change>) {
        let now = Instant::now();
        let mut taken = 0;
        for change in std::iter::once(first).chain(queue.try_iter()) {
            taken += 1;
            if let Change::File {
                scope: Scope::Data,
                rel,
                kind,
                settled,
                folder,
                ..
            } = &change
            {
                self.changes.note(rel, *kind, *settled);
                if *folder == Some(true) && matches!(kind, EventKind::Create | EventKind::Rename) {
                    self.changes.note_new_folder(rel);
                }
                // While the pause marker exists (a bulk import, a sync under way) a save
                // waits for the resume's reconcile, as it would with no run under way.
                let handed = self.is_memory(rel) && !self.sched.is_paused();
                if let Some(fresh) = self.fresh.as_ref().filter(|_| handed) {
                    // Heard during an ingest run: complete, it goes into the run's next
                    // batch; the run this change brings next finds it recorded.
                    fresh.heard(rel, *settled);
                    if *settled {
                        log::debug!(
                            "{}: saved while ingest runs: handed to it for its next batch",
                            crate::model::file_key::display(rel)
                        );
                    }
                }
                if *settled && self.is_memory(rel) {
                    self.prehasher
                        .closed(rel.clone(), self.watching.roots.data_dir.join(rel));
                } else {
                    // A folder (or a path that may be one) that moved or went takes
                    // everything read under it along.
                    let inside = *folder != Some(false)
                        && matches!(kind, EventKind::Remove | EventKind::Rename);
                    self.prehasher.forget(rel, inside);
                }
            }
            self.on_change(&change, now);
        }
        self.watching.outlet.backlog.taken(taken);
    }

    /// Gathers the facts routing asks for (the only I/O a change costs), then carries out
    /// its route.
    fn on_change(&mut self, change: &Change, now: Instant) {
        let needs = routing::needs(change, &self.config.rules);
        let facts = Facts {
            paused: self.sched.is_paused(),
            pause_marker: needs.pause_marker && self.watching.roots.pause_file.exists(),
            is_dir: needs.is_dir.is_some_and(|path| path.is_dir()),
            verdict: needs
                .verdict
                .map(|path| self.baselines.judge(&self.paths, &path)),
        };
        match routing::route(change, &self.config.rules, &facts) {
            Route::Wake { wakes, deferred } => self.wake(wakes, deferred, now),
            Route::Ignored(why) => log::debug!("ignored {why}"),
            Route::Rules => self.sched.rules_changed(now),
            Route::Pause { paused } => self.set_paused(paused, now),
            Route::Canary => {
                if self.canary.seen(&mut self.sched) {
                    log::debug!("canary came back: the watcher hears data_dir");
                    self.report.canary = Some(CanaryMark::new(CanaryStatus::Ok, SystemTime::now()));
                    self.report_health();
                }
            }
            Route::Rescan => {
                log::warn!("the watcher lost events (rescan flag): reconciling everything");
                self.counted_rescan("rescan: the watcher lost events", now);
            }
            Route::Root => self.rewatch_root(now),
            Route::SourceFolder(wakes) => {
                if let Some(why) = self.watching.add_source_folders() {
                    self.past_the_limit(why, now);
                }
                self.wake(wakes, false, now);
            }
        }
    }

    /// Whether ingest would read `rel` (its include and exclude globs).
    fn is_memory(&self, rel: &Path) -> bool {
        self.config
            .rules
            .ingest
            .as_ref()
            .is_some_and(|ingest| crate::actions::walk::is_memory(ingest, rel))
    }

    /// Runs wait (`paused`) or not from now on; a change is logged and reported.
    fn set_paused(&mut self, paused: bool, now: Instant) {
        if paused == self.sched.is_paused() {
            return;
        }
        log::info!(
            "{} {}: runs {}",
            self.watching.roots.pause_file.display(),
            if paused { "exists" } else { "is gone" },
            if paused {
                "wait until it is removed"
            } else {
                "resume with one full reconcile"
            }
        );
        self.sched.set_paused(paused, now);
        self.report.paused_since = paused.then(|| crate::state::timestamp(SystemTime::now()));
        self.report_health();
    }

    /// Reads the pause marker again. Its events are hints like any other: one lost with a
    /// batch, or a reload that names another marker, must not pause (or hold) runs forever.
    pub(super) fn recheck_pause(&mut self, now: Instant) {
        let marker = self.watching.roots.pause_file.exists();
        self.set_paused(marker, now);
    }

    /// data_dir went away or came back. Its watches went with it (or point at the folder
    /// it was moved to), so the watcher is rebuilt on the folder now there, and everything
    /// is reconciled: files written into a new data_dir make no event before its watch.
    fn rewatch_root(&mut self, now: Instant) {
        self.resolve_data_dir();
        let data_dir = &self.watching.roots.data_dir;
        if data_dir.is_dir() {
            log::warn!(
                "{} was replaced: watching the new folder",
                data_dir.display()
            );
        } else {
            log::warn!(
                "{} went away: runs will report it missing until it is back",
                data_dir.display()
            );
        }
        if let Err(e) = self.watching.start(self.watching.kind) {
            log::error!("cannot rebuild the watcher: {}", e.chain());
        }
        self.counted_rescan("rescan: data_dir was replaced", now);
    }

    /// A full reconcile forced by events lost (or never heard): counted in the watcher's
    /// report at once, so watchdog_state.json's `rescans` says how deaf it has been.
    fn counted_rescan(&mut self, reason: &str, now: Instant) {
        self.report.rescans += 1;
        self.sched.rescan(reason, now);
        // The marker's own event may be among those lost.
        self.recheck_pause(now);
        self.report_health();
    }

    /// Looked at on each wake: data_dir resolves elsewhere now (a link above it was
    /// re-pointed, which no event of its own announces), so the watcher follows.
    pub(super) fn follow_data_dir(&mut self, now: Instant) {
        if self.resolve_data_dir() {
            self.rewatch_root(now);
        }
    }

    /// Points the roots at the folder data_dir resolves to now, if that changed (its
    /// link was re-pointed). Whether it did. The marker and the canary live in data_dir:
    /// they move along; what was read under the old folder is not the new one's.
    fn resolve_data_dir(&mut self) -> bool {
        let Ok(now_at) = self.paths.data_dir.canonicalize() else {
            // Gone: a Root change says so, and runs report it missing.
            return false;
        };
        let roots = &mut self.watching.roots;
        if now_at == roots.data_dir {
            return false;
        }
        log::warn!(
            "{} points at {} now, not {}: watching it and reconciling everything",
            self.paths.data_dir.display(),
            now_at.display(),
            roots.data_dir.display()
        );
        let canary = roots.canary_file.file_name().map(|n| now_at.join(n));
        roots.pause_file = now_at.join(&self.config.rules.pause_file);
        if let Some(canary) = canary {
            self.canary.moved(canary.clone(), &mut self.sched);
            roots.canary_file = canary;
        }
        roots.data_dir = now_at;
        self.prehasher.forget(Path::new(""), true);
        true
    }

    fn wake(&mut self, wakes: Vec<Wake>, deferred: bool, now: Instant) {
        for wake in wakes {
            if deferred {
                log::debug!("deferred while paused: {} for {}", wake.action, wake.reason);
            }
            self.sched.event(wake.action, wake.reason, now);
        }
    }

    pub(super) fn on_notice(&mut self, notice: Notice) {
        let now = Instant::now();
        match notice {
            Notice::Overflow => {
                self.watching.outlet.backlog.rescanned();
                log::warn!(
                    "the event loop fell behind and dropped changes: reconciling everything"
                );
                self.counted_rescan("rescan: events were dropped while the loop was busy", now);
            }
            Notice::WatchLimit(why) => self.past_the_limit(why, now),
            Notice::Mounts(what) => self.rewatch_mounts(&what, now),
            Notice::Errors(errors) => {
                for e in &errors {
                    log::warn!("watcher error: {e}");
                }
                self.counted_rescan("rescan: the watcher reported errors", now);
            }
        }
    }

    /// A file system was mounted or unmounted under data_dir (`what`): no event announces
    /// what the mount brings or takes, and its folders have no watch, so the watcher is
    /// rebuilt on data_dir as it is now and everything reconciled.
    fn rewatch_mounts(&mut self, what: &str, now: Instant) {
        log::info!("{what}: watching data_dir again and reconciling everything");
        if let Err(e) = self.watching.start(self.watching.kind) {
            log::error!("cannot rebuild the watcher: {}", e.chain());
        }
        self.sched.rescan(
            "rescan: a file system was mounted or unmounted in data_dir",
            now,
        );
        self.recheck_pause(now);
    }

    /// The inotify watch limit stopped a watch: poll instead, and reconcile what the deaf
    /// folders missed meanwhile.
    fn past_the_limit(&mut self, why: String, now: Instant) {
        if !self.watching.past_the_limit(why) {
            return;
        }
        self.counted_rescan("rescan: the inotify watch limit was reached", now);
    }

    /// Writes the tick's canary, and answers one that never came back: the watcher is
    /// rebuilt (or replaced by polling) and everything reconciled, since it may have
    /// missed changes for as long as it was deaf.
    pub(super) fn canary(&mut self, now: Instant) {
        self.canary.write_if_asked(&mut self.sched, now);
        let Some(remedy) = self.canary.missed(&mut self.sched, now, self.watching.kind) else {
            return;
        };
        log::warn!(
            "the watcher did not report its canary in {}: {}",
            self.watching.roots.data_dir.display(),
            remedy.describe()
        );
        self.report.canary = Some(CanaryMark::new(CanaryStatus::Missed, SystemTime::now()));
        if let Err(e) = self.watching.start(remedy.kind()) {
            log::error!("cannot rebuild the watcher: {}", e.chain());
        }
        self.sched
            .rescan("rescan: the watcher missed its canary", now);
        self.report_health();
    }
}

#[cfg(test)]
mod tests {
    //! The loop's translation of changes into runs, on the test thread: fake changes in,
    //! scheduler decisions out. No watcher, no threads, no sleeping.
    use super::super::{Channels, Config};
    use super::*;
    use crate::config::paths::Paths;
    use crate::config::rules::Rules;
    use crate::model::action::Action;
    use crate::model::trigger::Trigger;
    use crate::state::atomic;
    use crate::watch::{self, Outlet, Roots};
    use crossbeam_channel::unbounded;
    use std::path::PathBuf;
    use std::time::Duration;

    struct Fixture {
        _dir: tempfile::TempDir,
        daemon: Daemon,
        t0: Instant,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(home.join("Data")).unwrap();
        std::fs::write(home.join("paths.json"), "{}").unwrap();
        let rules_text = "debounce = \"400ms\"\n\
            [actions.ingest]\ncommand = [\"i\", \"{files}\"]\n[actions.retry]\ncommand = [\"r\", \"{task_id}\"]\n\
            [[rules]]\nname = \"memories\"\nin = \"data\"\npaths = [\"**/*.txt\"]\nrun = [\"ingest\"]\n\
            [[rules]]\nname = \"queue\"\nin = \"state\"\npaths = [\"task_queue.json\"]\nrun = [\"retry\"]\n";
        std::fs::write(home.join("watch-rules.toml"), rules_text).unwrap();
        let paths = Paths::load(&home.join("paths.json")).unwrap();
        let rules = Rules::load(&home.join("watch-rules.toml")).unwrap();
        let roots = Roots {
            data_dir: home.join("Data"),
            state_dir: home.clone(),
            home: home.clone(),
            rules_file: home.join("watch-rules.toml"),
            rules_link: None,
            data_link: None,
            pause_file: home.join("Data/.memsched-pause"),
            canary_file: home.join("Data/.memsched-canary-0"),
            source_dirs: Vec::new(),
            sources: globset::GlobSet::empty(),
        };
        let channels = Channels {
            outlet: Outlet {
                changes: unbounded().0,
                notices: unbounded().0,
                backlog: watch::Backlog::default(),
                capacity: 1,
            },
            control: unbounded().0,
        };
        let t0 = Instant::now();
        let config = Config {
            file: home.join("watch-rules.toml"),
            rules,
            modes: Action::ALL.to_vec(),
        };
        let mut daemon = Daemon::new(&paths, config, roots, channels, t0);
        let startup = daemon.sched.poll(t0).unwrap();
        assert_eq!(startup.trigger, Trigger::Startup);
        daemon.sched.run_finished();
        Fixture {
            _dir: dir,
            daemon,
            t0,
        }
    }

    fn file(d: &Daemon, scope: Scope, rel: &str, kind: EventKind) -> Change {
        let root = if scope == Scope::Data {
            &d.watching.roots.data_dir
        } else {
            &d.watching.roots.state_dir
        };
        Change::File {
            scope,
            rel: PathBuf::from(rel),
            kind,
            path: root.join(rel),
            folder: None,
            settled: false,
        }
    }

    const LATER: Duration = Duration::from_secs(1);

    #[test]
    fn a_matching_data_change_runs_its_rules_action_and_others_are_ignored() {
        let Fixture {
            _dir,
            daemon: mut d,
            t0,
        } = fixture();
        let ignored = file(&d, Scope::Data, "notes.md", EventKind::Create);
        d.on_change(&ignored, t0);
        assert_eq!(d.sched.poll(t0 + LATER), None, "no rule matches notes.md");
        let change = file(&d, Scope::Data, "a.txt", EventKind::Create);
        d.on_change(&change, t0);
        let run = d.sched.poll(t0 + LATER).unwrap();
        assert_eq!(run.actions, [Action::Ingest]);
        assert_eq!(run.reasons, ["create a.txt (rule \"memories\")"]);
    }

    #[test]
    fn own_writes_to_the_queue_are_ignored_and_new_failed_tasks_are_not() {
        let Fixture {
            _dir,
            daemon: mut d,
            t0,
        } = fixture();
        let queue = d.paths.task_queue.clone();
        atomic::write(&queue, br#"{"tasks": [{"id": "a", "status": "done"}]}"#).unwrap();
        let change = file(&d, Scope::State, "task_queue.json", EventKind::Modify);
        d.on_change(&change, t0);
        assert_eq!(d.sched.poll(t0 + LATER), None, "memsched's own write");
        std::fs::write(
            &queue,
            r#"{"tasks": [{"id": "a", "status": "done"}, {"id": "b", "status": "failed"}]}"#,
        )
        .unwrap();
        d.on_change(&change, t0 + LATER);
        assert_eq!(
            d.sched.poll(t0 + LATER * 2).unwrap().actions,
            [Action::Retry]
        );
    }

    #[test]
    fn the_pause_marker_holds_runs_until_it_goes() {
        let Fixture {
            _dir,
            daemon: mut d,
            t0,
        } = fixture();
        std::fs::write(&d.watching.roots.pause_file, "").unwrap();
        d.on_change(&Change::Pause, t0);
        let change = file(&d, Scope::Data, "a.txt", EventKind::Create);
        d.on_change(&change, t0);
        assert_eq!(d.sched.poll(t0 + LATER * 60), None);
        std::fs::remove_file(&d.watching.roots.pause_file).unwrap();
        d.on_change(&Change::Pause, t0 + LATER * 60);
        let run = d.sched.poll(t0 + LATER * 60).unwrap();
        assert_eq!((run.trigger, run.actions.len()), (Trigger::Resume, 2));
    }

    #[test]
    fn touching_the_marker_while_paused_changes_nothing() {
        let Fixture {
            _dir,
            daemon: mut d,
            t0,
        } = fixture();
        std::fs::write(&d.watching.roots.pause_file, "").unwrap();
        d.on_change(&Change::Pause, t0);
        assert!(d.report.paused_since.is_some());
        // A mark no new pause would write: it stays only if this is the same pause.
        d.report.paused_since = Some("the first pause".to_owned());
        d.on_change(&Change::Pause, t0 + LATER);
        assert_eq!(
            d.report.paused_since.as_deref(),
            Some("the first pause"),
            "still the same pause"
        );
        assert!(d.sched.is_paused());
    }

    #[test]
    fn a_new_folder_wakes_the_data_rules_and_a_rescan_wakes_everything() {
        let Fixture {
            _dir,
            daemon: mut d,
            t0,
        } = fixture();
        std::fs::create_dir(d.watching.roots.data_dir.join("inbox")).unwrap();
        let change = file(&d, Scope::Data, "inbox", EventKind::Create);
        d.on_change(&change, t0);
        let run = d.sched.poll(t0 + LATER).unwrap();
        assert_eq!(run.actions, [Action::Ingest]);
        assert!(
            run.reasons[0].starts_with("new folder inbox"),
            "{:?}",
            run.reasons
        );
        d.sched.run_finished();
        d.on_change(&Change::Rescan, t0 + LATER);
        let run = d.sched.poll(t0 + LATER * 2).unwrap();
        assert_eq!((run.trigger, run.actions.len()), (Trigger::Rescan, 2));
    }
}
