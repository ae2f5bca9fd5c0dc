//! Planning the memories saved while an ingest run is under way ([`FreshSaves`], heard
//! by the watcher), between the run's batches (issue 19: one note saved during a
//! 2,000-file import waited 82 s, behind every batch planned before it). They are planned
//! as an event run would plan them and sent in the run's next batch; the run that follows
//! for the same changes finds them recorded, so nothing is sent twice and nothing missed.

use std::collections::HashSet;

use super::hints::{FreshSaves, WatcherHints};
use super::plan::{Candidate, plan};
use super::scan::scan;
use crate::config::rules::IngestConfig;
use crate::run::context::Context;
use crate::state::ingest_hash::IngestHash;
use crate::state::task_queue::TaskQueue;

/// The files `fresh` heard saved since the last call that need sending, planned as an
/// event run plans its changed paths: content not yet ingested, not awaiting retry, and
/// not among the files the run still has `queued` (those go in their turn). Whatever else
/// they need (a removal, a record of known content, a file still being written) is left
/// to the run the same changes bring next. Sorted by path.
pub(super) fn to_send(
    fresh: &FreshSaves,
    ctx: &Context<'_>,
    config: &IngestConfig,
    hashes: &mut IngestHash,
    queued: &[Candidate],
) -> Vec<Candidate> {
    let changed = fresh.take_complete();
    if changed.is_empty() {
        return Vec::new();
    }
    // Judged against the time they were saved, not the run's start: a file saved
    // after the run began is no file "dated in the future".
    let ctx = Context {
        now: ctx.clock.now(),
        ..*ctx
    };
    let hints = WatcherHints {
        closed: changed.iter().cloned().collect(),
        changed: Some(changed),
        ..WatcherHints::default()
    };
    let loaded = scan(&ctx.paths.data_dir, config, &hints)
        .and_then(|scanned| Ok((scanned, TaskQueue::load(&ctx.paths.task_queue)?)));
    let (scanned, queue) = match loaded {
        Ok(loaded) => loaded,
        Err(e) => {
            // The next run meets the same error and reports it.
            log::debug!(
                "ingest: files saved during the run wait for the next: {}",
                e.chain()
            );
            return Vec::new();
        }
    };
    let fresh = plan(&ctx, config, scanned, hashes, &queue, &hints, false);
    let queued: HashSet<&str> = queued.iter().map(|c| c.key.as_str()).collect();
    fresh
        .send
        .into_iter()
        .filter(|c| !queued.contains(c.key.as_str()))
        .collect()
}
