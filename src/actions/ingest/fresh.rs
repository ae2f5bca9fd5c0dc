//! Planning the memories saved while an ingest run is under way ([`FreshSaves`], heard
//! by the watcher), between the run's batches (issue 19: one note saved during a
//! 2,000-file import waited 82 s, behind every batch planned before it). They are planned
//! as an event run would plan them and sent in the run's next batch; the run that follows
//! for the same changes finds them recorded, so nothing is sent twice and nothing missed.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use super::hints::{FreshSaves, WatcherHints};
use super::plan::{Candidate, plan};
use super::scan::scan;
use crate::config::rules::IngestConfig;
use crate::run::context::Context;
use crate::state::ingest_hash::IngestHash;
use crate::state::task_queue::TaskQueue;

/// What the saves heard since the last batch ask of the run.
#[derive(Debug, Default)]
pub(super) struct Heard {
    /// Files to send now, ahead of the queue. Sorted by path.
    pub(super) send: Vec<Candidate>,
    /// Files the run still has queued, saved anew since it planned them: they go in their
    /// turn, and their batch, which reads them then, records the content read now.
    pub(super) restated: Vec<Candidate>,
}

/// The files `fresh` heard saved since the last call that need sending, planned as an
/// event run plans its changed paths: content not yet ingested, not awaiting retry; those
/// among the files the run still has `queued` are restated, not sent ahead. Whatever else
/// they need (a removal, a record of known content, a file still being written) is left
/// to the run the same changes bring next.
pub(super) fn to_send(
    fresh: &FreshSaves,
    ctx: &Context<'_>,
    config: &IngestConfig,
    hashes: &mut IngestHash,
    queued: &[Candidate],
) -> Heard {
    let changed = fresh.take_complete();
    if changed.is_empty() {
        return Heard::default();
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
            return Heard::default();
        }
    };
    let fresh = plan(&ctx, config, scanned, hashes, &queue, &hints, false);
    let queued: HashSet<&str> = queued.iter().map(|c| c.key.as_str()).collect();
    let (mut restated, send): (Vec<Candidate>, _) = fresh
        .send
        .into_iter()
        .partition(|c| queued.contains(c.key.as_str()));
    // Saved back to what is recorded: its batch still reads it, and records that.
    restated.extend(
        fresh
            .record_only
            .into_iter()
            .map(|(c, _)| c)
            .filter(|c| queued.contains(c.key.as_str())),
    );
    Heard { send, restated }
}

/// Queued files saved anew during the run (see [`Heard::restated`]), by key, until their
/// batch goes; and the keys whose content changed so, whose copies the plan meant to
/// record as that content once they were done.
#[derive(Debug, Default)]
pub(super) struct Restated {
    waiting: HashMap<String, Candidate>,
    changed: HashSet<String>,
}

impl Restated {
    pub(super) fn note(&mut self, restated: Vec<Candidate>) {
        for candidate in restated {
            self.waiting.insert(candidate.key.clone(), candidate);
        }
    }

    /// `batch` as it goes: each file saved anew since the plan, as it was read then.
    pub(super) fn apply<'b>(&mut self, batch: &'b [Candidate]) -> Cow<'b, [Candidate]> {
        if self.waiting.is_empty() || !batch.iter().any(|c| self.waiting.contains_key(&c.key)) {
            return Cow::Borrowed(batch);
        }
        let restated = batch
            .iter()
            .map(|planned| match self.waiting.remove(&planned.key) {
                Some(now) => {
                    if now.hash != planned.hash {
                        self.changed.insert(planned.key.clone());
                    }
                    now
                }
                None => planned.clone(),
            })
            .collect();
        Cow::Owned(restated)
    }

    /// Whether `key` went with other content than the plan read (saved anew).
    pub(super) fn changed(&self, key: &str) -> bool {
        self.changed.contains(key)
    }
}
