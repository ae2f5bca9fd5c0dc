//! The pipeline actions memsched schedules, and what each one plans, runs and records.

pub mod ingest;
pub mod retry;
pub mod retry_policy;
pub mod upload;
pub mod walk;
pub mod watchdog;

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use crate::config::paths::Paths;
use crate::config::rules::Rules;
use crate::model::action::Action;
use crate::model::clock::Clock;
use crate::state::ingest_hash::Digest;
use crate::state::stat::Stat;

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
    /// Data files (relative to data_dir) the watcher heard their writers finish; they
    /// need not wait out `settle` (empty outside the watcher).
    pub settled: &'a HashSet<PathBuf>,
    /// Data files the watcher already read as their writers closed them (see
    /// [`Prehashed`]); empty outside the watcher.
    pub prehashed: &'a Prehashed,
}

/// Content hashes the watcher took as each writer closed its file, by path relative to
/// data_dir, with the file's stat when it was read, each read after the last change the
/// watcher heard of its file. A plan trusts one while the file's stat is still that one,
/// as it trusts ingest_hash.json's stat cache, and an event run's scan takes a complete
/// file's stat from it without looking the file up: a storm of 10,000 new files is read
/// during its own quiet window (issue 8).
pub type Prehashed = std::collections::HashMap<PathBuf, (Stat, Digest)>;

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
