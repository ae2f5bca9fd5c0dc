//! The lock of the step a retried task runs. memsched's own ingest tasks carry the ingest
//! argv as their `command`, and a retry command re-runs the ingest step too: run under
//! retry.lock alone, the ingest step ran twice at once, beside an ingest run or beside
//! itself with `parallel` (issue 21 item 1). So a group of tasks takes the action lock of
//! each step it runs (ingest.lock for `ingest` tasks), hands it to those tasks' commands,
//! and runs them one at a time; when another process holds that lock, the tasks wait for
//! a later run rather than start a second copy.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use crate::error::Error;
use crate::model::action::Action;
use crate::os::lock::{self, Guard};
use crate::run::context::Context;

/// The step locks one group holds, or why it could not take them.
#[derive(Debug, Default)]
pub(super) struct StepLocks {
    held: HashMap<Action, (Guard, Mutex<()>)>,
    busy: HashMap<Action, String>,
}

/// A step lock a task holds while its command runs: the path to hand to the command, and
/// this process's turn at the step.
pub(super) struct Turn<'a> {
    pub(super) path: PathBuf,
    _one_at_a_time: MutexGuard<'a, ()>,
}

/// The action whose lock a task of `step` must hold: every action but retry itself.
fn action_of(step: &str) -> Option<Action> {
    Action::from_name(step).filter(|a| *a != Action::Retry)
}

impl StepLocks {
    /// Takes, without waiting, the lock of each step among `steps`.
    pub(super) fn take<'s>(ctx: &Context<'_>, steps: impl Iterator<Item = &'s str>) -> Self {
        let mut locks = StepLocks::default();
        for action in steps.filter_map(action_of) {
            if locks.held.contains_key(&action) || locks.busy.contains_key(&action) {
                continue;
            }
            let path = ctx.paths.action_lock(action.name());
            // A resident step of this process holding the lock is closed first: a task's
            // one-shot step never runs beside it (issue 19).
            crate::run::resident::release(&path);
            match lock::try_acquire(&path) {
                Ok(guard) => {
                    locks.held.insert(action, (guard, Mutex::new(())));
                }
                Err(e) => {
                    locks.busy.insert(action, busy_text(action, &path, &e));
                }
            }
        }
        locks
    }

    /// The lock a task of `step` runs under (`None`: its step has none to take), waiting
    /// for this group's other task of that step to finish; `Err`: another process holds
    /// it, so the task does not run now (why).
    pub(super) fn turn(&self, step: &str) -> Result<Option<Turn<'_>>, String> {
        let Some(action) = action_of(step) else {
            return Ok(None);
        };
        if let Some(why) = self.busy.get(&action) {
            return Err(why.clone());
        }
        let Some((guard, one)) = self.held.get(&action) else {
            return Ok(None);
        };
        Ok(Some(Turn {
            path: guard.path().to_path_buf(),
            _one_at_a_time: one
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        }))
    }
}

/// Why the tasks of `action`'s step wait: who holds its lock.
pub(super) fn busy_text(action: Action, path: &Path, e: &Error) -> String {
    let name = action.name();
    match e {
        Error::LockHeld { pid, .. } => format!(
            "not run now: {} holds {name}.lock, so the {name} step is running; the task stays due and runs in a later retry run",
            pid.map_or_else(|| "another process".to_owned(), |p| format!("pid {p}"))
        ),
        other => format!(
            "not run now: {} cannot be taken ({other}), and the {name} step must not run without it; the task stays due",
            path.display()
        ),
    }
}
