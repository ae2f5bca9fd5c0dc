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

    /// `action` ran to the end of its plan, which it started at `planned`: pending work
    /// that only changes heard before then asked for, that run has seen (the index ingest
    /// wrote in the run that uploaded it), so it needs no run of its own. Work a timer,
    /// tick or rescan asked for stays. Whether anything was dropped.
    pub(crate) fn absorb(&mut self, action: Action, planned: Instant) -> bool {
        let seen = self
            .pending
            .get(&action)
            .is_some_and(|p| p.trigger == Trigger::Event && p.at.is_none() && p.last <= planned);
        if seen {
            self.pending.remove(&action);
        }
        seen
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
mod tests;
