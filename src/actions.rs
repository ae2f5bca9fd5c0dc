//! The pipeline actions memsched schedules, and what each one plans, runs and records.

pub mod backoff;
pub mod ingest;
pub mod retry;
pub mod upload;
pub mod watchdog;

use std::ffi::OsString;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::paths::Paths;
use crate::rules::Rules;

/// What every action's plan and execution get: where things are, the rules, the time the
/// run started (the clock, injected), and how the run was asked for.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub paths: &'a Paths,
    pub rules: &'a Rules,
    pub now: SystemTime,
    /// Plan and report only: run nothing, write nothing.
    pub dry_run: bool,
    /// Whether long work may draw a progress bar on stderr (it still needs a terminal).
    pub progress: bool,
    /// Set by SIGINT or SIGTERM: finish the step that runs, start no other.
    pub stop: &'a AtomicBool,
}

/// One of the four pipeline actions, in the order a full run takes them (the seed's order:
/// retry what failed, ingest what is new, push uploads, then check health).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Retry,
    Ingest,
    Upload,
    Watchdog,
}

impl Context<'_> {
    /// Whether a signal asked memsched to stop: start no further step.
    #[must_use]
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// The environment every step gets: which action runs it, and where things are.
    #[must_use]
    pub fn step_env(
        &self,
        action: Action,
        result: Option<OsString>,
    ) -> Vec<(&'static str, OsString)> {
        let paths = self.paths;
        let mut env = vec![
            ("MEMSCHED_ACTION", OsString::from(action.name())),
            ("MEMSCHED_HOME", paths.home.clone().into_os_string()),
            ("MEMSCHED_DATA_DIR", paths.data_dir.clone().into_os_string()),
            (
                "MEMSCHED_INDEX_DIR",
                paths.index_dir.clone().into_os_string(),
            ),
            (
                "MEMSCHED_STATE_DIR",
                paths.state_dir.clone().into_os_string(),
            ),
        ];
        if let Some(result) = result {
            env.push(("MEMSCHED_RESULT", result));
        }
        env
    }
}

impl Action {
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

    /// The placeholders this action's command may use.
    #[must_use]
    pub fn placeholders(self) -> &'static [&'static str] {
        match self {
            Action::Ingest => &["files", "list"],
            Action::Retry => &["task_id"],
            Action::Upload => &["path", "relpath", "remote"],
            Action::Watchdog => &[],
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
