//! [`Scope`]: where a rule's paths are rooted. A shared noun of the rules and the watcher.

use serde::{Deserialize, Serialize};

/// Where a rule's `paths` are rooted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// data_dir, the memory files.
    Data,
    /// state_dir, the state files.
    State,
}
