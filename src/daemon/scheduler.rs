//! The watcher's decisions as a pure state machine over an injected clock: which actions
//! are pending and why, when each may run (a quiet window after the last change, never
//! later than `max_wait` after the first), timers for the next retry or upload that falls
//! due, the periodic tick, the pause marker, rescan backoff and the liveness canary.
//! No I/O, no threads, no sleeping: the event loop feeds it inputs and the time.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::model::action::Action;
use crate::model::trigger::Trigger;

/// Reasons kept per pending action (a storm of 10,000 files needs only a sample).
const REASONS_KEPT: usize = 20;
/// Rescans closer together than this count as repeating, and back off.
const RESCAN_WINDOW: Duration = Duration::from_secs(60);
const RESCAN_FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// The timing settings, from the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Settings {
    /// Changes must be quiet this long before their run starts: `debounce`, the one
    /// debounce between a change and its run (the watcher delivers events as they come).
    pub quiet: Duration,
    pub max_wait: Duration,
    pub tick: Duration,
    /// How long the canary's event may take before the watcher is taken as deaf.
    pub canary_timeout: Duration,
}

impl Settings {
    #[must_use]
    pub(crate) fn from_rules(debounce: Duration, max_wait: Duration, tick: Duration) -> Settings {
        Settings {
            quiet: debounce,
            max_wait,
            tick,
            canary_timeout: (debounce * 4).max(Duration::from_secs(10)),
        }
    }
}

#[derive(Debug, Clone)]
struct Pending {
    first: Instant,
    last: Instant,
    /// Set for triggers that run at once (startup, tick, timer, rescan, resume).
    at: Option<Instant>,
    trigger: Trigger,
    reasons: Vec<String>,
    /// Whether a change heard by the watcher asked for this action.
    heard: bool,
}

/// A run the loop should start now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RunOrder {
    pub actions: Vec<Action>,
    pub trigger: Trigger,
    /// Which changes, timers or ticks woke it.
    pub reasons: Vec<String>,
    /// The actions a change heard by the watcher asked for: what they find was announced.
    pub heard: Vec<Action>,
}

#[derive(Debug)]
// Four independent flags: a run in progress, the pause marker, shutdown, a canary request.
#[allow(clippy::struct_excessive_bools)]
pub(crate) struct Scheduler {
    settings: Settings,
    allowed: Vec<Action>,
    pending: BTreeMap<Action, Pending>,
    timers: BTreeMap<Action, Instant>,
    running: bool,
    paused: bool,
    stopping: bool,
    next_tick: Instant,
    last_rescan: Option<Instant>,
    rescan_backoff: Duration,
    canary_wanted: bool,
    canary_due: Option<Instant>,
    /// When the edited rules file is read again: writers make several events per save
    /// (truncate, write, close), and a file read between them would parse as the wrong
    /// rules, so a reload waits for the same quiet window as a run.
    reload_at: Option<Instant>,
    /// A rescan was asked for and has not started yet.
    rescan_waiting: bool,
}

impl Scheduler {
    /// A scheduler whose first run, due at once, catches up on everything that changed
    /// while memsched was not running.
    #[must_use]
    pub(crate) fn new(settings: Settings, allowed: Vec<Action>, now: Instant) -> Scheduler {
        let mut s = Scheduler {
            settings,
            allowed,
            pending: BTreeMap::new(),
            timers: BTreeMap::new(),
            running: false,
            paused: false,
            stopping: false,
            next_tick: now + settings.tick,
            last_rescan: None,
            rescan_backoff: Duration::ZERO,
            canary_wanted: false,
            canary_due: None,
            reload_at: None,
            rescan_waiting: false,
        };
        s.full(
            Trigger::Startup,
            "startup: catch up on what changed while memsched was not running",
            now,
            now,
        );
        s
    }

    /// The actions it may run (a rules reload may configure more or fewer); pending work
    /// for the others is dropped.
    pub(crate) fn set_allowed(&mut self, allowed: Vec<Action>) {
        self.pending.retain(|a, _| allowed.contains(a));
        self.timers.retain(|a, _| allowed.contains(a));
        self.allowed = allowed;
    }

    /// New timing settings (a rules reload); pending work keeps its place.
    pub(crate) fn set_settings(&mut self, settings: Settings, now: Instant) {
        if settings.tick != self.settings.tick {
            self.next_tick = now + settings.tick;
        }
        self.settings = settings;
    }

    fn add(
        &mut self,
        action: Action,
        trigger: Trigger,
        reason: String,
        now: Instant,
        at: Option<Instant>,
    ) {
        if !self.allowed.contains(&action) {
            return;
        }
        let p = self.pending.entry(action).or_insert_with(|| Pending {
            first: now,
            last: now,
            at: None,
            trigger,
            reasons: Vec::new(),
            heard: false,
        });
        p.heard |= trigger == Trigger::Event;
        p.last = now;
        p.trigger = p.trigger.merge(trigger);
        if let Some(at) = at {
            p.at = Some(p.at.map_or(at, |old| old.min(at)));
        }
        if p.reasons.len() < REASONS_KEPT {
            p.reasons.push(reason);
        } else if p.reasons.len() == REASONS_KEPT {
            p.reasons.push("… and more".to_owned());
        }
    }

    /// A change that a rule maps to `action`.
    pub(crate) fn event(&mut self, action: Action, reason: String, now: Instant) {
        self.add(action, Trigger::Event, reason, now, None);
    }

    /// Every allowed action, due at `at`.
    fn full(&mut self, trigger: Trigger, reason: &str, now: Instant, at: Instant) {
        for action in self.allowed.clone() {
            self.add(action, trigger, reason.to_owned(), now, Some(at));
        }
    }

    /// The watcher lost events: reconcile everything once they are quiet for the debounce
    /// (a rescan in the middle of a storm would read files half-written), backing off
    /// while rescans repeat. Losses heard before the rescan ran are one episode.
    pub(crate) fn rescan(&mut self, reason: &str, now: Instant) {
        if self.rescan_waiting {
            for action in self.allowed.clone() {
                self.add(action, Trigger::Rescan, reason.to_owned(), now, None);
            }
            return;
        }
        self.rescan_waiting = true;
        let repeating = self
            .last_rescan
            .is_some_and(|last| now.saturating_duration_since(last) < RESCAN_WINDOW);
        self.rescan_backoff = if repeating {
            (self.rescan_backoff * 2).clamp(RESCAN_FIRST_BACKOFF, self.settings.tick)
        } else {
            Duration::ZERO
        };
        self.last_rescan = Some(now);
        let at = (!self.rescan_backoff.is_zero()).then(|| now + self.rescan_backoff);
        for action in self.allowed.clone() {
            self.add(action, Trigger::Rescan, reason.to_owned(), now, at);
        }
    }

    /// When `action` has work again (a backoff ends); `None` clears its timer.
    pub(crate) fn set_timer(&mut self, action: Action, at: Option<Instant>) {
        match at {
            Some(at) if self.allowed.contains(&action) => {
                self.timers.insert(action, at);
            }
            _ => {
                self.timers.remove(&action);
            }
        }
    }

    /// `action` has work due at `at`, found by another action's run (ingest queued failed
    /// files for retry): an earlier timer stays.
    pub(crate) fn wake_at(&mut self, action: Action, at: Instant) {
        if !self.allowed.contains(&action) {
            return;
        }
        let timer = self.timers.entry(action).or_insert(at);
        *timer = (*timer).min(at);
    }

    /// The rules file changed: reload it once it has been quiet for the debounce.
    pub(crate) fn rules_changed(&mut self, now: Instant) {
        self.reload_at = Some(now + self.settings.quiet);
    }

    /// Whether the rules are due to be reloaded now; saying so clears it.
    pub(crate) fn take_reload(&mut self, now: Instant) -> bool {
        if self.reload_at.is_some_and(|at| at <= now) {
            self.reload_at = None;
            return true;
        }
        false
    }

    /// The pause marker appeared (`true`) or went. Going runs one full reconcile.
    pub(crate) fn set_paused(&mut self, paused: bool, now: Instant) {
        if self.paused && !paused {
            self.full(
                Trigger::Resume,
                "resume: the pause marker was removed",
                now,
                now,
            );
        }
        self.paused = paused;
    }

    #[must_use]
    pub(crate) fn is_paused(&self) -> bool {
        self.paused
    }

    pub(crate) fn run_finished(&mut self) {
        self.running = false;
    }

    /// Take no new work; the run in progress may finish.
    pub(crate) fn stop(&mut self) {
        self.stopping = true;
    }

    /// Stopping, and no run in progress: the loop may exit.
    #[must_use]
    pub(crate) fn is_done(&self) -> bool {
        self.stopping && !self.running
    }

    /// Whether a tick asked for a canary; asking clears the request.
    pub(crate) fn take_canary_request(&mut self) -> bool {
        std::mem::take(&mut self.canary_wanted)
    }

    pub(crate) fn canary_written(&mut self, now: Instant) {
        self.canary_due = Some(now + self.settings.canary_timeout);
    }

    /// The canary's event came back; `false` if none was expected.
    pub(crate) fn canary_seen(&mut self) -> bool {
        self.canary_due.take().is_some()
    }

    /// The canary's deadline passed without its event.
    pub(crate) fn canary_missed(&mut self, now: Instant) -> bool {
        if self.canary_due.is_some_and(|due| due <= now) {
            self.canary_due = None;
            return true;
        }
        false
    }

    fn due(&self, p: &Pending) -> Instant {
        p.at.unwrap_or_else(|| (p.last + self.settings.quiet).min(p.first + self.settings.max_wait))
    }

    /// Advances the clock: ticks and timers become pending work, and the run to start now
    /// (if any) is returned. One run at a time; work that arrives meanwhile waits for it.
    pub(crate) fn poll(&mut self, now: Instant) -> Option<RunOrder> {
        if now >= self.next_tick && !self.stopping {
            self.full(
                Trigger::Tick,
                "tick: periodic reconcile and watchdog",
                now,
                now,
            );
            self.canary_wanted = true;
            self.next_tick = now + self.settings.tick;
        }
        let fired: Vec<Action> = self
            .timers
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(a, _)| *a)
            .collect();
        for action in fired {
            self.timers.remove(&action);
            self.add(
                action,
                Trigger::Timer,
                format!("timer: {action} has work falling due"),
                now,
                Some(now),
            );
        }
        if self.running || self.stopping || self.paused {
            return None;
        }
        let ready: Vec<Action> = self
            .pending
            .iter()
            .filter(|(_, p)| self.due(p) <= now)
            .map(|(a, _)| *a)
            .collect();
        if ready.is_empty() {
            return None;
        }
        let mut order = RunOrder {
            actions: Vec::new(),
            trigger: Trigger::Event,
            reasons: Vec::new(),
            heard: Vec::new(),
        };
        for action in ready {
            let p = self
                .pending
                .remove(&action)
                .expect("ready actions are pending");
            order.trigger = order.trigger.merge(p.trigger);
            for reason in p.reasons {
                if !order.reasons.contains(&reason) {
                    order.reasons.push(reason);
                }
            }
            if p.heard {
                order.heard.push(action);
            }
            order.actions.push(action);
        }
        // A run that covers a rescan (a rescan, or a startup catch-up) answers it.
        if order.trigger.merge(Trigger::Rescan) == order.trigger {
            self.rescan_waiting = false;
        }
        self.running = true;
        Some(order)
    }

    /// When the loop must wake up next even if nothing arrives.
    #[must_use]
    pub(crate) fn next_wake(&self) -> Instant {
        let mut wake = self.next_tick;
        for at in self
            .timers
            .values()
            .chain(self.canary_due.iter())
            .chain(self.reload_at.iter())
        {
            wake = wake.min(*at);
        }
        if !self.running && !self.paused {
            for p in self.pending.values() {
                wake = wake.min(self.due(p));
            }
        }
        wake
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn settings() -> Settings {
        Settings::from_rules(400 * MS, 10_000 * MS, 900_000 * MS)
    }

    fn started(t0: Instant) -> Scheduler {
        let mut s = Scheduler::new(settings(), Action::ALL.to_vec(), t0);
        let first = s.poll(t0).expect("startup runs at once");
        assert_eq!(first.trigger, Trigger::Startup);
        assert_eq!(first.actions, Action::ALL);
        s.run_finished();
        s
    }

    #[test]
    fn a_storm_becomes_one_run_after_the_quiet_window() {
        let t0 = Instant::now();
        let mut s = started(t0);
        for i in 0..50u32 {
            let t = t0 + MS * (i * 50);
            s.event(Action::Ingest, format!("create f{i}.txt"), t);
            assert_eq!(s.poll(t), None, "still inside the storm at {i}");
        }
        let last = t0 + MS * (49 * 50);
        assert_eq!(
            s.next_wake(),
            last + 400 * MS,
            "the trailing edge: debounce after the last"
        );
        assert_eq!(s.poll(last + 399 * MS), None);
        let run = s.poll(last + 400 * MS).unwrap();
        assert_eq!(run.actions, [Action::Ingest]);
        assert_eq!(run.trigger, Trigger::Event);
        assert_eq!(run.reasons.len(), REASONS_KEPT + 1);
    }

    #[test]
    fn max_wait_bounds_the_delay_of_changes_that_never_pause() {
        let t0 = Instant::now();
        let mut s = started(t0);
        let mut t = t0;
        let run = loop {
            s.event(Action::Ingest, "modify log.txt".into(), t);
            if let Some(run) = s.poll(t) {
                break run;
            }
            t += 50 * MS;
        };
        assert_eq!(run.actions, [Action::Ingest]);
        assert_eq!(t, t0 + 10_000 * MS);
    }

    #[test]
    fn a_trigger_during_a_run_runs_once_more_afterwards() {
        let t0 = Instant::now();
        let mut s = started(t0);
        s.event(Action::Ingest, "a".into(), t0);
        let run = s.poll(t0 + 400 * MS).unwrap();
        assert_eq!(run.actions, [Action::Ingest]);
        s.event(Action::Ingest, "b".into(), t0 + 450 * MS);
        s.event(Action::Ingest, "c".into(), t0 + 460 * MS);
        assert_eq!(s.poll(t0 + 5_000 * MS), None, "one run at a time");
        s.run_finished();
        let again = s.poll(t0 + 5_000 * MS).unwrap();
        assert_eq!(again.reasons, ["b", "c"]);
        s.run_finished();
        assert_eq!(s.poll(t0 + 6_000 * MS), None, "and only once");
    }

    #[test]
    fn timers_wake_the_loop_exactly_when_work_falls_due() {
        let t0 = Instant::now();
        let mut s = started(t0);
        s.set_timer(Action::Retry, Some(t0 + 30_000 * MS));
        assert_eq!(s.next_wake(), t0 + 30_000 * MS);
        assert_eq!(s.poll(t0 + 29_999 * MS), None);
        let run = s.poll(t0 + 30_000 * MS).unwrap();
        assert_eq!(
            (run.actions.as_slice(), run.trigger),
            ([Action::Retry].as_slice(), Trigger::Timer)
        );
    }

    #[test]
    fn the_tick_reconciles_everything_and_asks_for_a_canary() {
        let t0 = Instant::now();
        let mut s = started(t0);
        assert_eq!(s.next_wake(), t0 + 900_000 * MS);
        let run = s.poll(t0 + 900_000 * MS).unwrap();
        assert_eq!((run.actions.len(), run.trigger), (4, Trigger::Tick));
        assert!(s.take_canary_request());
        assert!(!s.take_canary_request());
        let t1 = t0 + 900_001 * MS;
        s.canary_written(t1);
        assert!(!s.canary_missed(t1 + 9_999 * MS));
        assert!(s.canary_missed(t1 + 10_000 * MS));
        s.canary_written(t1);
        assert!(s.canary_seen());
        assert!(!s.canary_seen());
    }

    #[test]
    fn a_pause_defers_triggers_and_its_end_reconciles_once() {
        let t0 = Instant::now();
        let mut s = started(t0);
        s.set_paused(true, t0);
        s.event(Action::Ingest, "a".into(), t0);
        assert_eq!(s.poll(t0 + 60_000 * MS), None);
        s.set_paused(false, t0 + 60_000 * MS);
        let run = s.poll(t0 + 60_000 * MS).unwrap();
        assert_eq!((run.actions.len(), run.trigger), (4, Trigger::Resume));
        assert!(run.reasons.contains(&"a".to_owned()));
    }

    #[test]
    fn a_rules_edit_is_reloaded_once_its_events_are_quiet() {
        let t0 = Instant::now();
        let mut s = started(t0);
        s.rules_changed(t0);
        s.rules_changed(t0 + 100 * MS);
        assert_eq!(s.next_wake(), t0 + 500 * MS);
        assert!(!s.take_reload(t0 + 499 * MS), "the writer may not be done");
        assert!(s.take_reload(t0 + 500 * MS));
        assert!(!s.take_reload(t0 + 600 * MS), "once");
    }

    #[test]
    fn repeated_rescans_back_off() {
        let t0 = Instant::now();
        let mut s = started(t0);
        s.rescan("overflow", t0);
        s.rescan("overflow again, before the rescan ran", t0 + 100 * MS);
        assert_eq!(
            s.poll(t0 + 499 * MS),
            None,
            "waits for the losses to be quiet"
        );
        let run = s.poll(t0 + 500 * MS).unwrap();
        assert_eq!(run.trigger, Trigger::Rescan);
        s.run_finished();
        s.rescan("overflow", t0 + 1_000 * MS);
        assert_eq!(s.poll(t0 + 1_999 * MS), None);
        assert!(s.poll(t0 + 2_000 * MS).is_some());
        s.run_finished();
        s.rescan("overflow", t0 + 3_000 * MS);
        assert_eq!(s.poll(t0 + 4_999 * MS), None);
        assert!(s.poll(t0 + 5_000 * MS).is_some());
    }

    #[test]
    fn actions_outside_the_mode_never_run_and_stop_lets_the_run_finish() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(settings(), vec![Action::Ingest], t0);
        assert_eq!(s.poll(t0).unwrap().actions, [Action::Ingest]);
        s.event(Action::Upload, "x".into(), t0);
        s.set_timer(Action::Retry, Some(t0));
        s.stop();
        assert!(!s.is_done(), "the run in progress finishes first");
        s.run_finished();
        assert!(s.is_done());
        assert_eq!(s.poll(t0 + 60_000 * MS), None);
    }
}
