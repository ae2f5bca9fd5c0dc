//! [`Trigger`]: why a run happens, as scheduler_log.json records it. One enum for the
//! one-shot runs (`--trigger`) and the watcher's runs.

use serde::{Deserialize, Serialize};

/// Why a run happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    /// `--once` by hand (the default of `--trigger`).
    Manual,
    /// `--once --trigger cron`.
    Cron,
    /// The watcher's first run: catch up on what changed while it was not running.
    Startup,
    /// The watcher lost events: reconcile everything.
    Rescan,
    /// The pause marker was removed.
    Resume,
    /// The periodic tick: watchdog plus a full reconcile.
    Tick,
    /// An action's own timer (a retry or upload backoff ending).
    Timer,
    /// A change a rule maps to an action.
    Event,
}

impl Trigger {
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Trigger::Manual => "manual",
            Trigger::Cron => "cron",
            Trigger::Startup => "startup",
            Trigger::Rescan => "rescan",
            Trigger::Resume => "resume",
            Trigger::Tick => "tick",
            Trigger::Timer => "timer",
            Trigger::Event => "event",
        }
    }

    /// How much a trigger promises to cover, highest first: when work from several
    /// triggers is merged into one run, the run is recorded under the one that covers the
    /// most (a startup catch-up covers a tick, which covers a single event).
    fn coverage(self) -> u8 {
        match self {
            Trigger::Manual | Trigger::Cron | Trigger::Startup => 7,
            Trigger::Rescan => 6,
            Trigger::Resume => 5,
            Trigger::Tick => 4,
            Trigger::Timer => 3,
            Trigger::Event => 2,
        }
    }

    /// The trigger a merged run is recorded under: the one that covers the most (a
    /// startup catch-up covers a tick, which covers a single event); on a tie, the earlier
    /// one stays.
    #[must_use]
    pub fn merge(self, other: Trigger) -> Trigger {
        if other.coverage() > self.coverage() {
            other
        } else {
            self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_keeps_the_trigger_that_covers_most() {
        assert_eq!(Trigger::Event.merge(Trigger::Tick), Trigger::Tick);
        assert_eq!(Trigger::Tick.merge(Trigger::Event), Trigger::Tick);
        assert_eq!(Trigger::Timer.merge(Trigger::Rescan), Trigger::Rescan);
        assert_eq!(Trigger::Startup.merge(Trigger::Resume), Trigger::Startup);
        assert_eq!(Trigger::Event.merge(Trigger::Event), Trigger::Event);
    }
}
