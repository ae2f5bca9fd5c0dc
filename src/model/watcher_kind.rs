//! [`WatcherKind`]: how the watcher hears of changes. Shared by the watcher, its
//! self-report in watchdog_state.json and health.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum WatcherKind {
    /// The kernel's inotify: events as they happen.
    #[default]
    Inotify,
    /// Scanning every few seconds (network file systems, or inotify limits reached).
    Poll,
}

impl WatcherKind {
    #[must_use]
    pub(crate) fn name(self) -> &'static str {
        match self {
            WatcherKind::Inotify => "inotify",
            WatcherKind::Poll => "poll",
        }
    }
}
