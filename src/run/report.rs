//! What a run did: one [`ActionReport`] per action and the [`RunRecord`] that goes to
//! scheduler_log.json and, with `--json`, to stdout. The types live beside the log that
//! keeps them (`state::run_record`), so its readers see the very types its writer uses;
//! here is what a run decides from them.

pub use crate::model::outcome::Outcome;
pub use crate::state::run_record::{
    ActionReport, FailedItem, Followup, RECORD_VERSION, RunRecord, count, detail,
};

use crate::error::Exit;

/// The exit status of a run: an interruption beats any failure, which beats a held lock,
/// which beats success.
#[must_use]
pub fn exit_of(actions: &[ActionReport]) -> Exit {
    if actions.iter().any(|a| a.outcome == Outcome::Interrupted) {
        Exit::Interrupted
    } else if actions.iter().any(|a| a.outcome == Outcome::Failed) {
        Exit::ActionFailed
    } else if actions.iter().any(|a| a.lock_held) {
        Exit::LockHeld
    } else {
        Exit::Ok
    }
}
