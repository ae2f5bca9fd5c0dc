//! The always-on watcher's loop: bootstrap, the channels and the threads that feed them,
//! the run worker, signals and rules reloads. It only wires; the decisions are pure and
//! live apart (the watchexec split of a worker that runs the loop and a handler that
//! decides): `routing` turns a change into actions, [`Scheduler`] decides when they run,
//! `canary` when the watcher is deaf, and `self_report` is what the loop says about
//! itself. Each reconcile runs on a worker thread so the loop keeps listening.

mod baseline;
mod canary;
mod routing;
pub mod scheduler;
mod self_report;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender, bounded, select, unbounded};
use notify_debouncer_full::DebouncedEvent;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use crate::action::Action;
use crate::error::{Error, Exit, Result};
use crate::lock;
use crate::paths::Paths;
use crate::reconcile::{self, Request};
use crate::report::RunRecord;
use crate::rules::Rules;
use crate::state::ingest_hash::Held;
use crate::trigger::Trigger;
use crate::watch::{self, CANARY_PREFIX, Change, Notice, Roots, Watcher};
use crate::watcher_kind::WatcherKind;
use baseline::Baselines;
use canary::Canary;
use routing::{Facts, Route};
use scheduler::{RunOrder, Scheduler, Settings};
use self_report::{CanaryMark, CanaryStatus, SelfReport};

/// Debounced batches the loop may fall behind by before it drops them and rescans.
pub const DEFAULT_EVENT_QUEUE: usize = 4096;

/// How the watcher was asked to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The actions it may run (`--mode`).
    pub allowed: Vec<Action>,
    /// Capacity of the batch channel (`MEMSCHED_EVENT_QUEUE`, a diagnostic knob).
    pub event_queue: usize,
    /// Poll instead of inotify (`--poll`).
    pub poll: bool,
}

enum Input {
    Notice(Notice),
    Signal(i32),
    Finished(Box<RunRecord>),
}

/// The rules in force and what decides which of their actions may run.
struct Config {
    /// Where the rules are reloaded from.
    file: PathBuf,
    rules: Rules,
    /// The actions `--mode` allows; the scheduler runs those of them the rules configure.
    modes: Vec<Action>,
}

impl Config {
    /// The allowed actions that the rules configure.
    fn runnable(&self) -> Vec<Action> {
        self.modes
            .iter()
            .copied()
            .filter(|a| self.rules.is_configured(*a))
            .collect()
    }

    fn settings(&self) -> Settings {
        Settings::from_rules(self.rules.debounce, self.rules.max_wait, self.rules.tick)
    }
}

/// The file-system watcher, where it looks, and the senders it is rebuilt with.
struct Watching {
    /// `None` only while it is being replaced, or after a replacement failed.
    watcher: Option<Watcher>,
    /// The kind of the watcher last started; a failed replacement leaves it as it was.
    kind: WatcherKind,
    roots: Roots,
    batches: Sender<Vec<DebouncedEvent>>,
    notices: Sender<Notice>,
    /// Set by the watcher when it drops a batch (one Overflow notice per episode);
    /// cleared when the loop has answered with a rescan.
    lost: Arc<AtomicBool>,
}

impl Watching {
    /// Starts a watcher of `kind` (it may fall back to polling), replacing the running one.
    fn start(&mut self, debounce: Duration, kind: WatcherKind) -> Result<()> {
        // The old watcher goes first, so its inotify watches are free for the new one.
        self.watcher = None;
        let watcher = watch::start(
            &self.roots,
            debounce,
            &self.batches,
            &self.notices,
            &self.lost,
            kind,
        )?;
        self.kind = watcher.kind();
        self.watcher = Some(watcher);
        Ok(())
    }
}

/// What the run threads get from the loop.
struct Worker {
    /// Where a finished run's record goes.
    done: Sender<Input>,
    /// Set on SIGINT or SIGTERM: the running reconcile finishes its step and starts no other.
    stop: Arc<AtomicBool>,
    /// The ingest manifest, loaded by the first run and held for the watcher's life, so an
    /// event run reads only the files that changed (issue 8).
    manifest: Held,
    /// ingest_hash.json and ingest.lock, to fold the journal in as the watcher stops.
    ingest_hash: PathBuf,
    ingest_lock: PathBuf,
}

impl Drop for Worker {
    /// Folds the journal of the last event runs into ingest_hash.json as the watcher
    /// stops, so the pipeline's scripts find every record there. Skipped when another
    /// process holds ingest.lock: its run compacts, and the journal is safe either way.
    fn drop(&mut self) {
        if !self.manifest.has_journal() {
            return;
        }
        let Ok(_guard) = lock::try_acquire(&self.ingest_lock) else {
            return;
        };
        let saved = self
            .manifest
            .lock(&self.ingest_hash)
            .and_then(|mut h| h.save());
        if let Err(e) = saved {
            log::warn!(
                "the ingest journal stays beside ingest_hash.json: {}",
                e.chain()
            );
        }
    }
}

impl Worker {
    /// Runs `order` on a thread of its own, then records it and hands it back to the loop.
    fn spawn(&self, paths: &Paths, rules: &Rules, order: RunOrder) {
        let names: Vec<&str> = order.actions.iter().map(|a| a.name()).collect();
        log::info!(
            "run ({}) of {}: woken by {}",
            order.trigger.name(),
            names.join(", "),
            order.reasons.join("; ")
        );
        let request = Request {
            actions: order.actions,
            trigger: order.trigger,
            dry_run: false,
            progress: false,
            woken_by: order.reasons,
            stop: Arc::clone(&self.stop),
            changed: None,
            manifest: self.manifest.clone(),
        };
        let (paths, rules, tx) = (paths.clone(), rules.clone(), self.done.clone());
        std::thread::spawn(move || {
            let record = reconcile::run(&paths, &rules, &request);
            if let Err(e) = reconcile::record(&paths, &rules, &record) {
                log::error!("the run was not recorded: {}", e.chain());
            }
            let _ = tx.send(Input::Finished(Box::new(record)));
        });
    }
}

/// Everything the loop owns.
struct Daemon {
    paths: Paths,
    config: Config,
    sched: Scheduler,
    baselines: Baselines,
    watching: Watching,
    canary: Canary,
    report: SelfReport,
    worker: Worker,
}

/// Runs the watcher until SIGINT or SIGTERM. Startup failures (lock, folders, watcher)
/// are errors; everything after is logged and the loop goes on.
pub fn run(paths: &Paths, rules_file: &Path, rules: Rules, options: &Options) -> Result<Exit> {
    std::fs::create_dir_all(&paths.state_dir).map_err(|source| Error::StateWrite {
        path: paths.state_dir.clone(),
        source,
    })?;
    let _scheduler_lock = lock::try_acquire(&paths.action_lock("scheduler"))?;
    let canonical = |p: &Path| {
        p.canonicalize().map_err(|source| Error::Scan {
            path: p.to_path_buf(),
            source,
        })
    };
    let data_dir = canonical(&paths.data_dir)?;
    let roots = Roots {
        pause_file: data_dir.join(&rules.pause_file),
        canary_file: data_dir.join(format!("{CANARY_PREFIX}{}", std::process::id())),
        state_dir: canonical(&paths.state_dir)?,
        rules_file: canonical(rules_file)?,
        data_dir,
    };
    let (batches_tx, batches_rx) = bounded(options.event_queue.max(1));
    let (control_tx, control_rx) = unbounded();
    let (notices_tx, notices_rx) = unbounded();
    forward_signals(control_tx.clone())?;
    forward_notices(notices_rx, control_tx.clone());
    let now = Instant::now();
    let channels = Channels {
        batches: batches_tx,
        control: control_tx,
        notices: notices_tx,
    };
    let config = Config {
        file: rules_file.to_path_buf(),
        rules,
        modes: options.allowed.clone(),
    };
    let mut d = Daemon::new(paths, config, roots, channels, now);
    let kind = if options.poll {
        WatcherKind::Poll
    } else {
        WatcherKind::Inotify
    };
    d.watching.start(d.config.rules.debounce, kind)?;
    if d.watching.roots.pause_file.exists() {
        log::info!(
            "paused: {} exists; runs wait until it is removed",
            d.watching.roots.pause_file.display()
        );
        d.sched.set_paused(true, now);
    }
    log::info!(
        "watching {} ({}) for {}; rules {}",
        d.watching.roots.data_dir.display(),
        d.watching.kind.name(),
        options
            .allowed
            .iter()
            .map(|a| a.name())
            .collect::<Vec<_>>()
            .join(", "),
        d.config.file.display()
    );
    d.report_health();
    d.event_loop(&batches_rx, &control_rx);
    d.canary.remove();
    log::info!("stopped");
    Ok(Exit::Ok)
}

/// SIGINT, SIGTERM and SIGHUP become inputs; the signal thread only sends.
fn forward_signals(tx: Sender<Input>) -> Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .map_err(|source| Error::Signals { source })?;
    std::thread::spawn(move || {
        for signal in signals.forever() {
            if tx.send(Input::Signal(signal)).is_err() {
                break;
            }
        }
    });
    Ok(())
}

fn forward_notices(rx: Receiver<Notice>, tx: Sender<Input>) {
    std::thread::spawn(move || {
        for notice in rx {
            if tx.send(Input::Notice(notice)).is_err() {
                break;
            }
        }
    });
}

/// The senders the loop hands to the watcher and to run threads.
struct Channels {
    batches: Sender<Vec<DebouncedEvent>>,
    control: Sender<Input>,
    notices: Sender<Notice>,
}

impl Daemon {
    fn new(
        paths: &Paths,
        config: Config,
        roots: Roots,
        channels: Channels,
        now: Instant,
    ) -> Daemon {
        Daemon {
            paths: paths.clone(),
            sched: Scheduler::new(config.settings(), config.runnable(), now),
            config,
            baselines: Baselines::capture(paths),
            canary: Canary::new(roots.canary_file.clone()),
            watching: Watching {
                watcher: None,
                kind: WatcherKind::default(),
                roots,
                batches: channels.batches,
                notices: channels.notices,
                lost: Arc::new(AtomicBool::new(false)),
            },
            report: SelfReport::default(),
            worker: Worker {
                done: channels.control,
                stop: Arc::new(AtomicBool::new(false)),
                manifest: Held::default(),
                ingest_hash: paths.ingest_hash.clone(),
                ingest_lock: paths.action_lock(Action::Ingest.name()),
            },
        }
    }

    fn event_loop(&mut self, batches: &Receiver<Vec<DebouncedEvent>>, control: &Receiver<Input>) {
        loop {
            let now = Instant::now();
            if let Some(order) = self.sched.poll(now) {
                self.worker.spawn(&self.paths, &self.config.rules, order);
            }
            self.canary(now);
            if self.sched.is_done() {
                return;
            }
            let wait = self
                .sched
                .next_wake()
                .saturating_duration_since(Instant::now());
            select! {
                recv(batches) -> batch => {
                    if let Ok(batch) = batch {
                        self.on_batch(&batch);
                    }
                }
                recv(control) -> input => match input {
                    Ok(Input::Notice(n)) => self.on_notice(n),
                    Ok(Input::Signal(s)) => self.on_signal(s),
                    Ok(Input::Finished(record)) => self.on_finished(&record),
                    Err(_) => return,
                },
                default(wait) => {}
            }
        }
    }

    fn on_finished(&mut self, record: &RunRecord) {
        self.sched.run_finished();
        let mut unannounced = 0;
        for a in &record.actions {
            log::info!("{}: {}: {}", a.action, a.outcome.label(), a.summary);
            for reason in &a.reasons {
                log::debug!("{}: {reason}", a.action);
            }
            self.sched
                .set_timer(a.action, a.followup.next_due.map(instant_of));
            unannounced += a.followup.found;
        }
        if record.trigger == Trigger::Tick {
            log::info!("tick: {unannounced} items found that no event announced");
            self.report.unannounced = Some(unannounced);
            self.report_health();
        }
    }

    fn on_batch(&mut self, batch: &[DebouncedEvent]) {
        let now = Instant::now();
        for event in batch {
            for change in watch::classify(event, &self.watching.roots) {
                self.on_change(&change, now);
            }
        }
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
            Route::Wake { wakes, deferred } => {
                for wake in wakes {
                    if deferred {
                        log::debug!("deferred while paused: {} for {}", wake.action, wake.reason);
                    }
                    self.sched.event(wake.action, wake.reason, now);
                }
            }
            Route::Ignored(why) => log::debug!("ignored {why}"),
            Route::Rules => self.reload_rules(),
            Route::Pause { paused, turned } => {
                if turned {
                    log::info!(
                        "{} {}: runs {}",
                        self.watching.roots.pause_file.display(),
                        if paused { "appeared" } else { "was removed" },
                        if paused {
                            "wait"
                        } else {
                            "resume with one full reconcile"
                        }
                    );
                }
                self.sched.set_paused(paused, now);
            }
            Route::Canary => {
                if self.canary.seen(&mut self.sched) {
                    log::debug!("canary came back: the watcher hears data_dir");
                    self.report.canary = Some(CanaryMark::new(CanaryStatus::Ok, SystemTime::now()));
                    self.report_health();
                }
            }
            Route::Rescan => {
                self.report.rescans += 1;
                log::warn!("the watcher lost events (rescan flag): reconciling everything");
                self.sched.rescan("rescan: the watcher lost events", now);
            }
        }
    }

    fn on_notice(&mut self, notice: Notice) {
        let now = Instant::now();
        match notice {
            Notice::Overflow => {
                self.watching.lost.store(false, Ordering::SeqCst);
                self.report.rescans += 1;
                log::warn!(
                    "the event loop fell behind and dropped a batch: reconciling everything"
                );
                self.sched
                    .rescan("rescan: events were dropped while the loop was busy", now);
            }
            Notice::Errors(errors) => {
                for e in &errors {
                    log::warn!("watcher error: {e}");
                }
                self.report.rescans += 1;
                self.sched
                    .rescan("rescan: the watcher reported errors", now);
            }
        }
    }

    fn on_signal(&mut self, signal: i32) {
        if signal == SIGHUP {
            log::info!("SIGHUP: reloading the rules");
            self.reload_rules();
            return;
        }
        log::info!("signal {signal}: stopping; a running step may finish or reach its timeout");
        self.worker.stop.store(true, Ordering::SeqCst);
        self.sched.stop();
    }

    /// Applies an edited rules file, or keeps the last good rules and says why.
    fn reload_rules(&mut self) {
        match Rules::load(&self.config.file) {
            Ok(rules) => {
                let rebuild = rules.debounce != self.config.rules.debounce;
                self.watching.roots.pause_file =
                    self.watching.roots.data_dir.join(&rules.pause_file);
                self.config.rules = rules;
                self.sched
                    .set_settings(self.config.settings(), Instant::now());
                self.sched.set_allowed(self.config.runnable());
                self.report.rules_error = None;
                log::info!("rules reloaded from {}", self.config.file.display());
                // The debouncer's timeout is fixed when it is built.
                if rebuild
                    && let Err(e) = self
                        .watching
                        .start(self.config.rules.debounce, self.watching.kind)
                {
                    log::error!(
                        "cannot restart the watcher with the new debounce: {}",
                        e.chain()
                    );
                }
            }
            Err(e) => {
                log::error!(
                    "rules not reloaded; the last good rules stay in force: {}",
                    e.chain()
                );
                self.report.rules_error = Some(e.chain());
            }
        }
        self.report_health();
    }

    /// Writes the tick's canary, and answers one that never came back: the watcher is
    /// rebuilt (or replaced by polling) and everything reconciled, since it may have
    /// missed changes for as long as it was deaf.
    fn canary(&mut self, now: Instant) {
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
        if let Err(e) = self
            .watching
            .start(self.config.rules.debounce, remedy.kind())
        {
            log::error!("cannot rebuild the watcher: {}", e.chain());
        }
        self.sched
            .rescan("rescan: the watcher missed its canary", now);
        self.report_health();
    }

    fn report_health(&self) {
        if let Err(e) = self
            .report
            .write(&self.paths.watchdog_state, self.watching.kind)
        {
            log::warn!("cannot record the watcher's health: {}", e.chain());
        }
    }
}

/// The monotonic instant of a wall-clock time (now, if it has passed).
fn instant_of(at: SystemTime) -> Instant {
    Instant::now()
        + at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    //! The loop's translation of changes into runs, on the test thread: fake changes in,
    //! scheduler decisions out. No watcher, no threads, no sleeping.
    use super::*;
    use crate::event_kind::EventKind;
    use crate::scope::Scope;
    use crate::state::atomic;

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
            rules_file: home.join("watch-rules.toml"),
            pause_file: home.join("Data/.memsched-pause"),
            canary_file: home.join("Data/.memsched-canary-0"),
        };
        let channels = Channels {
            batches: unbounded().0,
            control: unbounded().0,
            notices: unbounded().0,
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
        let run = d.sched.poll(t0 + LATER).unwrap();
        assert_eq!((run.trigger, run.actions.len()), (Trigger::Rescan, 2));
    }
}
