//! The always-on watcher's loop: what it owns, and one turn after another of waiting
//! for a change, a signal, a finished run or a timer, then doing what was decided. It only
//! wires; the decisions are pure and live apart (the watchexec split of a worker that runs
//! the loop and a handler that decides): `routing` turns a change into actions,
//! [`Scheduler`] decides when they run, `after_run` what a finished run leaves to do,
//! `reload` what new rules change, `canary` when the watcher is deaf. What it does about
//! what the watcher hears is in [`changes`].

mod changes;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender, select};
use signal_hook::consts::SIGHUP;

use super::after_run::{self, Carried, Timer};
use super::baseline::Baselines;
use super::canary::Canary;
use super::change_set::ChangeSet;
use super::input::Input;
use super::prehash;
use super::reload::{self, Reload};
use super::scheduler::{RunOrder, Scheduler, Settings};
use super::self_report::SelfReport;
use super::watcher_life::Watching;
use super::worker::Worker;
use crate::actions::ingest::FreshSaves;
use crate::config::paths::Paths;
use crate::config::rules::Rules;
use crate::error::Result;
use crate::model::action::Action;
use crate::model::outcome::Outcome;
use crate::model::trigger::Trigger;
use crate::model::watcher_kind::WatcherKind;
use crate::os::sd_notify::Notifier;
use crate::reconcile::Request;
use crate::run::interrupt;
use crate::run::report::RunRecord;
use crate::run::runner;
use crate::state::run_record::ActionReport;
use crate::watch::{Change, Interest, Outlet, Roots};

/// The rules in force and what decides which of their actions may run.
pub(super) struct Config {
    /// Where the rules are reloaded from.
    pub(super) file: PathBuf,
    pub(super) rules: Rules,
    /// The actions `--mode` allows; the scheduler runs those of them the rules configure.
    pub(super) modes: Vec<Action>,
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

/// Everything the loop owns.
pub(super) struct Daemon {
    paths: Paths,
    config: Config,
    sched: Scheduler,
    baselines: Baselines,
    watching: Watching,
    /// Data files heard since the last ingest run.
    changes: ChangeSet,
    /// Reads memory files as their writers close them.
    prehasher: prehash::Prehasher,
    /// Memories saved while an ingest run is under way, handed to it for its next batch.
    fresh: Option<FreshSaves>,
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

/// The senders the loop hands to the watcher and to run threads.
pub(super) struct Channels {
    pub(super) outlet: Outlet,
    pub(super) control: Sender<Input>,
}

impl Daemon {
    pub(super) fn new(
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
            watching: Watching::new(roots, interest, channels.outlet),
            changes: ChangeSet::default(),
            prehasher: prehash::Prehasher::start(),
            fresh: None,
            report: SelfReport::default(),
            systemd: Notifier::from_env(),
            keep_alive: None,
            signals: 0,
            worker: Worker::new(paths, channels.control),
        }
    }

    /// Starts the watcher, says what it watches, tells systemd it is ready, then turns
    /// until SIGINT or SIGTERM; its canary goes with it.
    pub(super) fn run(
        &mut self,
        kind: WatcherKind,
        now: Instant,
        changes: &Receiver<Change>,
        control: &Receiver<Input>,
    ) -> Result<()> {
        self.watching.start(kind)?;
        self.report.started_at = Some(crate::state::timestamp(SystemTime::now()));
        self.recheck_pause(now);
        log::info!(
            "watching {} ({}) for {}; rules {}",
            self.watching.roots.data_dir.display(),
            self.watching.kind.name(),
            self.config
                .runnable()
                .iter()
                .map(|a| a.name())
                .collect::<Vec<_>>()
                .join(", "),
            self.config.file.display()
        );
        self.report_health();
        self.systemd.ready();
        self.keep_alive = self
            .systemd
            .keep_alive_interval()
            .map(|i| Instant::now() + i);
        self.event_loop(changes, control);
        self.canary.remove();
        Ok(())
    }

    fn event_loop(&mut self, changes: &Receiver<Change>, control: &Receiver<Input>) {
        loop {
            let now = Instant::now();
            self.follow_data_dir(now);
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
                    Ok(Input::Finished(record, carried)) => self.on_finished(&record, &carried),
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
    fn start_run(&mut self, mut order: RunOrder) {
        self.worker.heard.clone_from(&order.heard);
        let upload_behind_ingest = self.upload_follows(&order.actions);
        if upload_behind_ingest {
            order.actions.push(Action::Upload);
        }
        let mut request = Request {
            woken_by: order.reasons,
            stop: Arc::clone(&self.worker.stop),
            upload_behind_ingest,
            ..Request::new(order.actions, order.trigger)
        };
        let hints = &mut request.ingest_hints;
        hints.manifest = self.worker.manifest.clone();
        if request.actions.contains(&Action::Ingest) {
            let taken = self.changes.take();
            hints.closed = taken.settled;
            hints.prehashed = self.prehasher.take();
            hints.changed = taken.changed.filter(|_| request.trigger == Trigger::Event);
            hints.fresh = Some(FreshSaves::default());
        }
        self.fresh.clone_from(&request.ingest_hints.fresh);
        self.worker.partial_ingest = request.ingest_hints.changed.is_some();
        self.worker.spawn(&self.paths, &self.config.rules, request);
    }

    /// Whether upload joins a run of `actions` to follow ingest (issue 19): the index
    /// ingest's step writes is an upload source, and waiting for its events would cost a
    /// second debounce. The run leaves it out again if ingest runs no step.
    fn upload_follows(&self, actions: &[Action]) -> bool {
        actions.contains(&Action::Ingest)
            && !actions.contains(&Action::Upload)
            && self.config.runnable().contains(&Action::Upload)
            && self
                .config
                .rules
                .upload
                .as_ref()
                .is_some_and(|u| !u.sources.is_empty())
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

    /// Carries out what [`after_run::decide`] says a finished run leaves to do, after
    /// saying what it did.
    fn on_finished(&mut self, record: &RunRecord, carried: &Carried) {
        self.sched.run_finished();
        self.fresh = None;
        self.systemd
            .status(&crate::commands::summary::status_line(record));
        for a in &record.actions {
            log_report(a);
            for reason in &a.reasons {
                log::debug!("{}: {reason}", a.action);
            }
        }
        if let Some(started) = carried.upload_started
            && record.actions.iter().any(|a| {
                a.action == Action::Upload
                    && matches!(a.outcome, Outcome::Ran | Outcome::NothingToDo)
            })
            && self.sched.absorb(Action::Upload, started)
        {
            log::debug!(
                "upload: the changes heard before its run planned were seen by it: no run of their own"
            );
        }
        let after = after_run::decide(record, carried);
        for (action, timer) in after.timers {
            match timer {
                Timer::Replace(due) => self.sched.set_timer(action, due.map(instant_of)),
                Timer::NoLaterThan(due) => self.sched.wake_at(action, instant_of(due)),
                Timer::Keep => {}
            }
        }
        for action in after.await_lock {
            self.worker.await_lock(&self.paths, action);
        }
        if after.walk_all_next {
            self.changes.walk_all_next();
        }
        if let Some(due) = after.retry_at {
            log::debug!(
                "ingest queued failed files: retry is due at {}",
                crate::state::timestamp(due)
            );
            self.sched.wake_at(Action::Retry, instant_of(due));
        }
        if after.watchdog_now {
            log::debug!("a task died: the watchdog runs at once");
            self.sched.wake_at(Action::Watchdog, Instant::now());
        }
        if let Some(unannounced) = after.unannounced {
            // A tick that found nothing is the usual case: not worth a line at info.
            let level = if unannounced == 0 {
                log::Level::Debug
            } else {
                log::Level::Info
            };
            log::log!(
                level,
                "tick: {unannounced} {} found that no event announced",
                if unannounced == 1 { "item" } else { "items" }
            );
            self.report.unannounced = Some(unannounced);
            self.report_health();
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
            // The first: finish the step that runs, start no other, say what is awaited. A
            // stop that was asked for is no warning (`journalctl -p warning` shows faults).
            log::info!("{}", interrupt::waiting_notice(signal, &runner::running()));
            self.worker.stop.store(true, Ordering::SeqCst);
            self.sched.stop();
            self.systemd.stopping();
        } else {
            // The second: end every running step's whole process group now; the actions it
            // interrupts are logged as warnings when the run ends.
            log::info!("{}", interrupt::abort_notice(&runner::abort_all()));
        }
    }

    /// Applies an edited rules file as [`reload::decide`] says, or keeps the last good
    /// rules and says why.
    fn reload_rules(&mut self) {
        let loaded = Rules::load(&self.config.file);
        // A re-pointed link resolves elsewhere now: watch where it points.
        let resolved = loaded
            .as_ref()
            .ok()
            .and_then(|_| self.config.file.canonicalize().ok());
        match reload::decide(loaded, resolved, &self.watching.roots) {
            Reload::Accepted(new) => {
                // A resident step runs the command of the rules it started under: closed
                // (on a thread of its own: it may take seconds), so the next batch starts
                // the command the new rules name.
                crate::run::resident::close_all_soon();
                let roots = &mut self.watching.roots;
                roots.rules_file = new.rules_file;
                roots.source_dirs = new.source_dirs;
                roots.sources = new.sources;
                roots.pause_file = new.pause_file;
                // The rules notify's thread filters by are shared: replaced here.
                self.watching.interest.set(new.rules.clone());
                self.config.rules = new.rules;
                self.sched
                    .set_settings(self.config.settings(), Instant::now());
                self.sched.set_allowed(self.config.runnable());
                self.report.rules_error = None;
                // The rules may name another marker.
                self.recheck_pause(Instant::now());
                if new.rebuild {
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
            Reload::Refused { why } => {
                log::error!("rules not reloaded; the last good rules stay in force: {why}");
                self.report.rules_error = Some(why);
            }
        }
        self.report_health();
    }

    fn report_health(&self) {
        if let Err(e) = self.report.write(
            &self.paths.watchdog_state,
            self.watching.kind,
            self.watching.fell_back.as_deref(),
        ) {
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

/// How many failed items of one action the log names; `memsched log N` has them all.
const LOGGED_FAILURES: usize = 10;

/// Logs one action's turn at the severity journald should file it under: a failed step is
/// an error (so `-q` and `journalctl -p err` show it) naming the items it failed on and
/// why; an interrupted one, or one that ran but failed on some items, a warning; work done
/// is info; nothing to do or skipped is debug, so a quiet tick stays quiet.
fn log_report(a: &ActionReport) {
    let level = match a.outcome {
        Outcome::Failed => log::Level::Error,
        Outcome::Interrupted => log::Level::Warn,
        Outcome::Ran | Outcome::WouldRun => log::Level::Info,
        Outcome::Skipped if a.lock_held => log::Level::Info,
        Outcome::NothingToDo | Outcome::Skipped => log::Level::Debug,
    };
    log::log!(level, "{}: {}: {}", a.action, a.outcome.label(), a.summary);
    let level = level.min(log::Level::Warn);
    if let Some(error) = a.error.as_deref().filter(|e| !a.summary.contains(e)) {
        log::log!(level, "{}: {error}", a.action);
    }
    for failed in a.failed_items.iter().take(LOGGED_FAILURES) {
        log::log!(
            level,
            "{}: failed {}: {}",
            a.action,
            failed.item,
            failed.error
        );
    }
    if a.failed_items.len() > LOGGED_FAILURES {
        log::log!(
            level,
            "{}: … and {} more failed (memsched log shows them all)",
            a.action,
            a.failed_items.len() - LOGGED_FAILURES
        );
    }
}
