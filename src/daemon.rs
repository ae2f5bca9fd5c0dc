//! The always-on watcher's loop: bootstrap, the channels and the threads that feed them,
//! the run worker, signals and rules reloads. It only wires; the decisions are pure and
//! live apart (the watchexec split of a worker that runs the loop and a handler that
//! decides): `routing` turns a change into actions, [`Scheduler`] decides when they run,
//! `canary` when the watcher is deaf, and `self_report` is what the loop says about
//! itself. Each reconcile runs on a worker thread so the loop keeps listening.

mod baseline;
mod canary;
mod change_set;
mod prehash;
mod routing;
pub mod scheduler;
mod self_report;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender, select, unbounded};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use crate::config::paths::Paths;
use crate::config::rules::Rules;
use crate::error::{Error, Exit, Result};
use crate::model::action::Action;
use crate::model::event_kind::EventKind;
use crate::model::scope::Scope;
use crate::model::trigger::Trigger;
use crate::model::watcher_kind::WatcherKind;
use crate::os::lock;
use crate::os::sd_notify::Notifier;
use crate::reconcile::{self, Request};
use crate::run::interrupt;
use crate::run::report::{Outcome, RunRecord};
use crate::run::runner;
use crate::state::ingest_hash::Held;
use crate::watch::{self, CANARY_PREFIX, Change, Interest, Notice, Outlet, Roots, Watcher};
use baseline::Baselines;
use canary::Canary;
use change_set::ChangeSet;
use routing::{Facts, Route, Wake};
use scheduler::{RunOrder, Scheduler, Settings};
use self_report::{CanaryMark, CanaryStatus, SelfReport};

/// Changes the loop may fall behind by before they are dropped for a rescan.
pub const DEFAULT_EVENT_QUEUE: usize = 65_536;

/// How the watcher was asked to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The actions it may run (`--mode`).
    pub allowed: Vec<Action>,
    /// Changes the loop may fall behind by (`MEMSCHED_EVENT_QUEUE`, a diagnostic knob).
    pub event_queue: usize,
    /// Poll instead of inotify (`--poll`).
    pub poll: bool,
}

enum Input {
    Notice(Notice),
    Signal(i32),
    Finished(Box<RunRecord>),
    /// The lock of an action the watcher had to skip is free again.
    LockFree(Action),
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

/// The file-system watcher, where it looks, what it lets through, and where it sends.
struct Watching {
    /// `None` only while it is being replaced, or after a replacement failed.
    watcher: Option<Watcher>,
    /// The kind of the watcher last started; a failed replacement leaves it as it was.
    kind: WatcherKind,
    roots: Roots,
    /// The rules notify's thread filters by; replaced on a reload.
    interest: Interest,
    outlet: Outlet,
}

impl Watching {
    /// Starts a watcher of `kind` (it may fall back to polling), replacing the running one.
    fn start(&mut self, kind: WatcherKind) -> Result<()> {
        // The old watcher goes first, so its inotify watches are free for the new one.
        self.watcher = None;
        let watcher = watch::start(&self.roots, &self.interest, &self.outlet, kind)?;
        self.kind = watcher.kind();
        self.watcher = Some(watcher);
        Ok(())
    }

    /// Watches the source folders that exist now and were missing when the watcher started.
    fn add_source_folders(&mut self) {
        let Some(watcher) = self.watcher.as_mut() else {
            return;
        };
        for (dir, mode) in &self.roots.source_dirs {
            if dir.is_dir()
                && let Err(e) = watcher.watch(dir, *mode)
            {
                log::warn!(
                    "cannot watch the upload sources in {}: {}",
                    dir.display(),
                    e.chain()
                );
            }
        }
    }
}

/// The rules path, absolute, when it is a link.
fn rules_link(rules_file: &Path) -> Option<PathBuf> {
    let is_link = std::fs::symlink_metadata(rules_file).is_ok_and(|m| m.file_type().is_symlink());
    is_link.then(|| std::path::absolute(rules_file).unwrap_or_else(|_| rules_file.to_path_buf()))
}

/// The roots of the upload sources the rules name.
fn sources_of(
    home: &Path,
    rules: &Rules,
) -> (Vec<(PathBuf, notify::RecursiveMode)>, globset::GlobSet) {
    match &rules.upload {
        Some(u) if !u.sources.is_empty() => (
            watch::source_folders(home, &u.sources),
            u.source_set.clone(),
        ),
        _ => (Vec::new(), globset::GlobSet::empty()),
    }
}

/// What the run threads get from the loop.
struct Worker {
    /// Where a finished run's record goes.
    done: Sender<Input>,
    /// Set on SIGINT or SIGTERM: the running reconcile finishes its step and starts no other.
    stop: Arc<AtomicBool>,
    /// The actions of the run in progress that a heard change asked for.
    heard: Vec<Action>,
    /// The run in progress plans ingest from the changed paths alone: what it says falls
    /// due covers only those, so it may not clear a timer an earlier run set.
    partial_ingest: bool,
    /// Actions skipped because another process held their lock, each with a thread
    /// waiting for that lock to be free.
    awaiting_lock: HashSet<Action>,
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
    /// `action` was skipped because another process (a `--once`) holds its lock, and
    /// that process planned before the changes that woke this run: wait for the lock on a
    /// thread, then run the action again.
    fn await_lock(&mut self, paths: &Paths, action: Action) {
        if !self.awaiting_lock.insert(action) {
            return;
        }
        let (lock, tx) = (paths.action_lock(action.name()), self.done.clone());
        std::thread::spawn(move || {
            if let Err(e) = lock::wait_until_free(&lock) {
                log::warn!("cannot wait for {}: {}", lock.display(), e.chain());
            }
            let _ = tx.send(Input::LockFree(action));
        });
    }

    /// Runs `request` on a thread of its own, then records it and hands it back to the
    /// loop.
    fn spawn(&self, paths: &Paths, rules: &Rules, request: Request) {
        let names: Vec<&str> = request.actions.iter().map(|a| a.name()).collect();
        log::info!(
            "run ({}) of {}: woken by {}",
            request.trigger.name(),
            names.join(", "),
            request.woken_by.join("; ")
        );
        let (paths, rules, tx) = (paths.clone(), rules.clone(), self.done.clone());
        std::thread::spawn(move || {
            let mut record = reconcile::run(&paths, &rules, &request);
            if request.stop.load(Ordering::SeqCst) {
                record.mark_interrupted();
            }
            if let Err(e) = reconcile::record(&paths, &rules, &record) {
                log::error!("the run was not recorded: {}", e.chain());
            }
            let _ = tx.send(Input::Finished(Box::new(record)));
            // The run's plan, hashes and batches are freed by now; glibc would keep them.
            crate::os::allocator::give_back();
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
    /// Data files heard since the last ingest run.
    changes: ChangeSet,
    /// Reads memory files as their writers close them.
    prehasher: prehash::Prehasher,
    canary: Canary,
    report: SelfReport,
    worker: Worker,
    /// systemd's notify socket (a no-op outside a `Type=notify` unit).
    systemd: Notifier,
    /// When the next keep-alive is due, when systemd watches for them.
    keep_alive: Option<Instant>,
    /// SIGINT and SIGTERM received so far.
    signals: u32,
}

/// Runs the watcher until SIGINT or SIGTERM. Startup failures (lock, folders, watcher)
/// are errors; everything after is logged and the loop goes on.
pub fn run(paths: &Paths, rules_file: &Path, rules: Rules, options: &Options) -> Result<Exit> {
    crate::os::allocator::settle_for_long_life();
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
    let home = canonical(&paths.home)?;
    let (source_dirs, sources) = sources_of(&home, &rules);
    let roots = Roots {
        pause_file: data_dir.join(&rules.pause_file),
        canary_file: data_dir.join(format!("{CANARY_PREFIX}{}", std::process::id())),
        state_dir: canonical(&paths.state_dir)?,
        rules_file: canonical(rules_file)?,
        rules_link: rules_link(rules_file),
        data_dir,
        home,
        source_dirs,
        sources,
    };
    let (changes_tx, changes_rx) = unbounded();
    let (control_tx, control_rx) = unbounded();
    let (notices_tx, notices_rx) = unbounded();
    forward_signals(control_tx.clone())?;
    forward_notices(notices_rx, control_tx.clone());
    let now = Instant::now();
    let channels = Channels {
        outlet: Outlet {
            changes: changes_tx,
            notices: notices_tx,
            backlog: watch::Backlog::default(),
            capacity: options.event_queue.max(1),
        },
        control: control_tx,
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
    d.watching.start(kind)?;
    d.report.started_at = Some(crate::state::timestamp(SystemTime::now()));
    d.recheck_pause(now);
    log::info!(
        "watching {} ({}) for {}; rules {}",
        d.watching.roots.data_dir.display(),
        d.watching.kind.name(),
        d.config
            .runnable()
            .iter()
            .map(|a| a.name())
            .collect::<Vec<_>>()
            .join(", "),
        d.config.file.display()
    );
    d.report_health();
    d.systemd.ready();
    d.keep_alive = d.systemd.keep_alive_interval().map(|i| Instant::now() + i);
    d.event_loop(&changes_rx, &control_rx);
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
    outlet: Outlet,
    control: Sender<Input>,
}

impl Daemon {
    fn new(
        paths: &Paths,
        config: Config,
        roots: Roots,
        channels: Channels,
        now: Instant,
    ) -> Daemon {
        let interest = Interest::new(config.rules.clone());
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
                interest,
                outlet: channels.outlet,
            },
            changes: ChangeSet::default(),
            prehasher: prehash::Prehasher::start(),
            report: SelfReport::default(),
            systemd: Notifier::from_env(),
            keep_alive: None,
            signals: 0,
            worker: Worker {
                done: channels.control,
                stop: Arc::new(AtomicBool::new(false)),
                awaiting_lock: HashSet::new(),
                heard: Vec::new(),
                partial_ingest: false,
                manifest: Held::default(),
                ingest_hash: paths.ingest_hash.clone(),
                ingest_lock: paths.action_lock(Action::Ingest.name()),
            },
        }
    }

    fn event_loop(&mut self, changes: &Receiver<Change>, control: &Receiver<Input>) {
        loop {
            let now = Instant::now();
            if self.sched.take_reload(now) {
                self.reload_rules();
            }
            if self.sched.is_paused() {
                // Every wake while paused (an event deferred, the tick) looks again, so a
                // lost removal event cannot hold runs for ever.
                self.recheck_pause(now);
            }
            if let Some(order) = self.sched.poll(now) {
                self.start_run(order);
            }
            self.canary(now);
            if self.sched.is_done() {
                return;
            }
            self.keep_alive(now);
            let wake = self
                .keep_alive
                .map_or(self.sched.next_wake(), |k| k.min(self.sched.next_wake()));
            let wait = wake.saturating_duration_since(Instant::now());
            select! {
                recv(changes) -> change => {
                    if let Ok(change) = change {
                        self.on_changes(change, changes);
                    }
                }
                recv(control) -> input => match input {
                    Ok(Input::Notice(n)) => self.on_notice(n),
                    Ok(Input::Signal(s)) => self.on_signal(s),
                    Ok(Input::Finished(record)) => self.on_finished(&record),
                    Ok(Input::LockFree(action)) => {
                        // A timer, not an event: the skipped action plans in full (for
                        // ingest, the skipped run also marked the change set incomplete).
                        log::debug!("{action} was skipped while another memsched held its lock, now free");
                        self.worker.awaiting_lock.remove(&action);
                        self.sched.wake_at(action, Instant::now());
                    }
                    Err(_) => return,
                },
                default(wait) => {}
            }
        }
    }

    /// Starts the run the scheduler ordered. An ingest run takes what the watcher heard
    /// since the last one: which files are complete, their early hashes, and (for a run
    /// that events alone woke) the paths to plan from; any other run walks all of data_dir.
    fn start_run(&mut self, order: RunOrder) {
        self.worker.heard.clone_from(&order.heard);
        let mut request = Request {
            woken_by: order.reasons,
            stop: Arc::clone(&self.worker.stop),
            ..Request::new(order.actions, order.trigger)
        };
        let hints = &mut request.ingest_hints;
        hints.manifest = self.worker.manifest.clone();
        if request.actions.contains(&Action::Ingest) {
            let taken = self.changes.take();
            hints.closed = taken.settled;
            hints.prehashed = self.prehasher.take();
            hints.changed = taken.changed.filter(|_| request.trigger == Trigger::Event);
        }
        self.worker.partial_ingest = request.ingest_hints.changed.is_some();
        self.worker.spawn(&self.paths, &self.config.rules, request);
    }

    /// Tells systemd the loop still turns, when it watches for that (`WatchdogSec=`): the
    /// one timer that wakes an idle watcher, and only under such a unit.
    fn keep_alive(&mut self, now: Instant) {
        if let (Some(due), Some(every)) = (self.keep_alive, self.systemd.keep_alive_interval())
            && due <= now
        {
            self.systemd.watchdog();
            self.keep_alive = Some(now + every);
        }
    }

    fn on_finished(&mut self, record: &RunRecord) {
        self.sched.run_finished();
        self.systemd
            .status(&crate::commands::summary::status_line(record));
        let mut unannounced = 0;
        for a in &record.actions {
            log::info!("{}: {}: {}", a.action, a.outcome.label(), a.summary);
            for reason in &a.reasons {
                log::debug!("{}: {reason}", a.action);
            }
            let due = a.followup.next_due.map(instant_of);
            if a.action == Action::Ingest && self.worker.partial_ingest {
                // An event run saw only its paths: a file an earlier run left to settle
                // still needs the timer that run set.
                if let Some(at) = due {
                    self.sched.wake_at(a.action, at);
                }
            } else {
                self.sched.set_timer(a.action, due);
            }
            // What an action a change asked for finds, that change announced.
            if !self.worker.heard.contains(&a.action) {
                unannounced += a.followup.found;
            }
            if a.lock_held {
                self.worker.await_lock(&self.paths, a.action);
            }
            let finished = matches!(a.outcome, Outcome::Ran | Outcome::NothingToDo);
            if a.action == Action::Ingest && !finished {
                self.changes.walk_all_next();
            }
        }
        // Files ingest failed on are now failed tasks, due at once: retry takes them now,
        // not at the next tick (its own plan backs off whatever is not due yet).
        if record
            .actions
            .iter()
            .any(|a| a.action == Action::Ingest && !a.failed_items.is_empty())
        {
            log::debug!("ingest queued failed files: retry is due at once");
            self.sched.wake_at(Action::Retry, Instant::now());
        }
        if record.trigger == Trigger::Tick {
            log::info!(
                "tick: {unannounced} {} found that no event announced",
                if unannounced == 1 { "item" } else { "items" }
            );
            self.report.unannounced = Some(unannounced);
            self.report_health();
        }
    }

    /// Takes `first` and every change already queued behind it (a storm arrives as many).
    fn on_changes(&mut self, first: Change, queue: &Receiver<Change>) {
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
                self.report.rescans += 1;
                log::warn!("the watcher lost events (rescan flag): reconciling everything");
                self.sched.rescan("rescan: the watcher lost events", now);
                // The marker's own event may be among those lost.
                self.recheck_pause(now);
            }
            Route::Root => self.rewatch_root(now),
            Route::SourceFolder(wakes) => {
                self.watching.add_source_folders();
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
    fn recheck_pause(&mut self, now: Instant) {
        let marker = self.watching.roots.pause_file.exists();
        self.set_paused(marker, now);
    }

    /// data_dir went away or came back. Its watches went with it (or point at the folder
    /// it was moved to), so the watcher is rebuilt on the folder now there, and everything
    /// is reconciled: files written into a new data_dir make no event before its watch.
    fn rewatch_root(&mut self, now: Instant) {
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
        self.report.rescans += 1;
        self.sched.rescan("rescan: data_dir was replaced", now);
        self.recheck_pause(now);
    }

    fn wake(&mut self, wakes: Vec<Wake>, deferred: bool, now: Instant) {
        for wake in wakes {
            if deferred {
                log::debug!("deferred while paused: {} for {}", wake.action, wake.reason);
            }
            self.sched.event(wake.action, wake.reason, now);
        }
    }

    fn on_notice(&mut self, notice: Notice) {
        let now = Instant::now();
        match notice {
            Notice::Overflow => {
                self.watching.outlet.backlog.rescanned();
                self.report.rescans += 1;
                log::warn!(
                    "the event loop fell behind and dropped changes: reconciling everything"
                );
                self.sched
                    .rescan("rescan: events were dropped while the loop was busy", now);
                self.recheck_pause(now);
            }
            Notice::Errors(errors) => {
                for e in &errors {
                    log::warn!("watcher error: {e}");
                }
                self.report.rescans += 1;
                self.sched
                    .rescan("rescan: the watcher reported errors", now);
                self.recheck_pause(now);
            }
        }
    }

    fn on_signal(&mut self, signal: i32) {
        if signal == SIGHUP {
            log::info!("SIGHUP: reloading the rules");
            self.reload_rules();
            return;
        }
        self.signals += 1;
        if self.signals == 1 {
            // The first: finish the step that runs, start no other, say what is awaited.
            log::warn!("{}", interrupt::waiting_notice(signal, &runner::running()));
            self.worker.stop.store(true, Ordering::SeqCst);
            self.sched.stop();
            self.systemd.stopping();
        } else {
            // The second: end every running step's whole process group now.
            log::warn!("{}", interrupt::abort_notice(&runner::abort_all()));
        }
    }

    /// Applies an edited rules file, or keeps the last good rules and says why.
    fn reload_rules(&mut self) {
        match Rules::load(&self.config.file) {
            Ok(rules) => {
                let (source_dirs, sources) = sources_of(&self.watching.roots.home, &rules);
                // A re-pointed link resolves elsewhere now: watch where it points.
                let target = self
                    .config
                    .file
                    .canonicalize()
                    .unwrap_or_else(|_| self.watching.roots.rules_file.clone());
                // The watcher's folders are fixed when it is built; the rules it filters by
                // are shared, and replaced here.
                let rebuild = source_dirs != self.watching.roots.source_dirs
                    || target != self.watching.roots.rules_file;
                self.watching.roots.rules_file = target;
                self.watching.roots.source_dirs = source_dirs;
                self.watching.roots.sources = sources;
                self.watching.roots.pause_file =
                    self.watching.roots.data_dir.join(&rules.pause_file);
                self.watching.interest.set(rules.clone());
                self.config.rules = rules;
                self.sched
                    .set_settings(self.config.settings(), Instant::now());
                self.sched.set_allowed(self.config.runnable());
                self.report.rules_error = None;
                // The rules may name another marker.
                self.recheck_pause(Instant::now());
                if rebuild {
                    match self.watching.start(self.watching.kind) {
                        // Changes made while no watch was in place are found by a reconcile.
                        Ok(()) => self.sched.rescan(
                            "rescan: the watcher was rebuilt for the new rules",
                            Instant::now(),
                        ),
                        Err(e) => log::error!(
                            "cannot restart the watcher for the new rules: {}",
                            e.chain()
                        ),
                    }
                }
                // Said once the watcher watches what the new rules name: an edit that
                // follows this line is heard.
                log::info!("rules reloaded from {}", self.config.file.display());
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
        if let Err(e) = self.watching.start(remedy.kind()) {
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
    use crate::model::event_kind::EventKind;
    use crate::model::scope::Scope;
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
            home: home.clone(),
            rules_file: home.join("watch-rules.toml"),
            rules_link: None,
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
