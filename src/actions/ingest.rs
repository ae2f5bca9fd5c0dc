//! Ingest: plan the data files whose content is not yet in ingest_hash.json, send them to
//! the ingest step in batches, record what it finished and queue what it failed on.

pub(crate) mod batches;
mod decide;
mod execute;
mod fresh;
mod hash;
mod hints;
mod job;
mod plan;
mod retried;
mod scan;
mod step;
mod step_result;
mod twins;

pub use execute::{Executed, execute, task_id};
pub use hash::hash_one;
pub use hints::{FreshSaves, Prehashed, WatcherHints};
pub use job::IngestJob;
pub use plan::{Candidate, Known, Plan, plan};
pub use retried::{RetriedRun, batchable, retry as retry_files};
pub use scan::{Scan, scan};
pub use step::resident_argvs;

use crate::config::rules::IngestConfig;
use crate::run::context::Context;
use crate::run::report::ActionReport;

/// The whole ingest action, through the job skeleton (see [`IngestJob`]).
#[must_use]
pub fn perform(
    ctx: &Context<'_>,
    config: &IngestConfig,
    hints: &WatcherHints,
    confirm_removals: bool,
) -> ActionReport {
    let job = IngestJob {
        config,
        hints,
        confirm_removals,
    };
    crate::run::job::perform(&job, ctx)
}
