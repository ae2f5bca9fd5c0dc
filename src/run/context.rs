//! [`Context`]: what every action's plan and execution get, whichever the action: where
//! things are, the rules, the instant the run started and its clock, and how the run was
//! asked for. What one action alone needs (ingest's hints from the watcher) travels
//! beside it, to that action only.

use std::ffi::OsString;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use crate::config::paths::Paths;
use crate::config::rules::Rules;
use crate::model::action::Action;
use crate::model::clock::{Clock, Frozen};
use crate::model::trigger::Trigger;
use crate::run::runner::Judged;

/// What every action's plan and execution get: where things are, the rules, the time the
/// run started (the clock, injected), and how the run was asked for.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    pub paths: &'a Paths,
    pub rules: &'a Rules,
    /// When the run started (plans decide against this one instant).
    pub now: SystemTime,
    /// The clock for times taken during the run (a step's start and end, a backoff).
    pub clock: &'a dyn Clock,
    /// Plan and report only: run nothing, write nothing.
    pub dry_run: bool,
    /// Whether long work may draw a progress bar on stderr (it still needs a terminal).
    pub progress: bool,
    /// Set by SIGINT or SIGTERM: finish the step that runs, start no other.
    pub stop: &'a AtomicBool,
    /// What started the run: a cron line's run folds ingest's journal only when it is
    /// worth it (issue 19 item 7).
    pub trigger: Trigger,
    /// What this run has judged of the commands it starts (see [`Judged`]): ingest's step
    /// and retry's command are judged once a run, not once a batch or a task.
    pub(crate) judged: &'a Judged,
}

impl Context<'_> {
    /// Whether a signal asked memsched to stop: start no further step.
    #[must_use]
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// The clock plans read: held still at the instant the run started, so every
    /// decision of one plan is taken against the same time.
    #[must_use]
    pub fn plan_clock(&self) -> Frozen {
        Frozen(self.now)
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
