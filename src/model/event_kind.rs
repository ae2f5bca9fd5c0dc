//! [`EventKind`]: the kinds of file change a rule can react to. A shared noun of the rules
//! and the watcher, which translates the watcher's events into it.

use serde::{Deserialize, Serialize};

/// The kinds of change a rule can react to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Create,
    Modify,
    Remove,
    Rename,
}

impl EventKind {
    pub const ALL: [EventKind; 4] = [
        EventKind::Create,
        EventKind::Modify,
        EventKind::Remove,
        EventKind::Rename,
    ];

    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Create => "create",
            EventKind::Modify => "modify",
            EventKind::Remove => "remove",
            EventKind::Rename => "rename",
        }
    }
}
