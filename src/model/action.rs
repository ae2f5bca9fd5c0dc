//! [`Action`]: the four pipeline actions memsched schedules. A shared noun: rules, plans,
//! reports and the watcher all name actions, so this module depends on nothing.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One of the four pipeline actions. The declaration order is the order a full run takes
/// them in (the seed's order: retry what failed, ingest what is new, push uploads, then
/// check health); `Ord` and [`Action::ALL`] follow it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Retry,
    Ingest,
    Upload,
    Watchdog,
}

impl Action {
    /// Every action, in run order.
    pub const ALL: [Action; 4] = [
        Action::Retry,
        Action::Ingest,
        Action::Upload,
        Action::Watchdog,
    ];

    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Action::Retry => "retry",
            Action::Ingest => "ingest",
            Action::Upload => "upload",
            Action::Watchdog => "watchdog",
        }
    }

    #[must_use]
    pub fn from_name(name: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.name() == name)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
