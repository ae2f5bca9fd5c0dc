//! The ingest plan: which data files to send, which to record without sending, which to
//! leave (still being written, awaiting retry, given up) and why. Built from the scan,
//! the hashes and one pure [`decide`](super::decide) per file.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub use super::decide::Known;
use super::decide::{self, Decision, Seen, Unread};
use super::hash::{self, ToRead};
use super::hints::WatcherHints;
use super::scan::Scan;
use crate::config::rules::IngestConfig;
use crate::model::file_key;
use crate::run::context::Context;
use crate::state::ingest_hash::{Digest, IngestHash, Record};
use crate::state::stat::Stat;
use crate::state::task_queue::TaskQueue;

/// Names listed per category in the plan's reasons before the rest are counted.
const LISTED: usize = 10;

/// A data file the plan looked at closely.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Key in the state files (see [`file_key`]).
    pub key: String,
    /// Path relative to data_dir.
    pub rel: PathBuf,
    /// Absolute path, as the step receives it.
    pub abs: PathBuf,
    pub stat: Stat,
    pub hash: Digest,
}

impl Candidate {
    /// The relative path, readable.
    #[must_use]
    pub fn shown(&self) -> String {
        file_key::display(&self.rel)
    }
}

#[derive(Debug, Default)]
pub struct Plan {
    /// Whether the plan looked only at the paths the watcher heard change (an event run),
    /// not at all of data_dir.
    pub changed_only: bool,
    /// Files matching the include globs (of the changed paths, in an event run).
    pub scanned: usize,
    /// Files whose stat matched the record: not read at all.
    pub unchanged: usize,
    /// Files whose content was read and hashed.
    pub hashed: usize,
    /// Of those, the files the watcher had read as their writers closed them.
    pub prehashed: usize,
    /// Files with content not yet ingested, in path order.
    pub send: Vec<Candidate>,
    /// How many of `send` had an older record (modified since ingest).
    pub modified: usize,
    pub record_only: Vec<(Candidate, Known)>,
    /// Copies of content that is in `send`: recorded once that original (its key) is done.
    pub after_send: Vec<(Candidate, String)>,
    /// Files modified within `settle`, or changing while hashed: (file, why).
    pub deferred: Vec<(String, String)>,
    /// Files whose earlier failure is a task the retry action owns: (file, task id).
    pub awaiting_retry: Vec<(String, String)>,
    /// Files whose task is dead: (file, task id). Changing the file sends it again.
    pub given_up: Vec<(String, String)>,
    /// Recorded files no longer in data_dir. Reported only: memsched deletes nothing.
    pub removed: Vec<String>,
    /// Files or folders that could not be read: (path, error).
    pub unreadable: Vec<(String, String)>,
}

impl Plan {
    /// Files the plan found ingested with their current content.
    #[must_use]
    pub fn ingested(&self) -> usize {
        self.unchanged
    }

    /// Whether there is anything to execute.
    #[must_use]
    pub fn has_work(&self) -> bool {
        !self.send.is_empty() || !self.record_only.is_empty()
    }

    /// One line per decision worth explaining, capped per category.
    #[must_use]
    pub fn reasons(&self) -> Vec<String> {
        let mut out = Vec::new();
        // Only the lines shown are formatted: a storm's plan sends 10,000 files.
        let mut list = |items: &mut dyn ExactSizeIterator<Item = String>| {
            let more = items.len().saturating_sub(LISTED);
            out.extend(items.take(LISTED));
            if more > 0 {
                out.push(format!("… and {more} more like the line above"));
            }
        };
        list(
            &mut self
                .send
                .iter()
                .map(|c| format!("send {}: content not yet ingested", c.shown())),
        );
        list(&mut self.record_only.iter().map(|(c, why)| match why {
            Known::Unmodified => format!(
                "record {}: content unchanged, only its stat changed",
                c.shown()
            ),
            Known::DoneByRetry(id) => {
                format!("record {}: ingested by the retry of task {id}", c.shown())
            }
            Known::SameContentAs(other) => format!(
                "record {}: same content as {}, not sent again",
                c.shown(),
                file_key::path(other).map_or_else(|| other.clone(), |p| file_key::display(&p))
            ),
        }));
        list(&mut self.after_send.iter().map(|(c, _)| {
            format!(
                "record {} once its twin in this run is done: same content",
                c.shown()
            )
        }));
        list(
            &mut self
                .deferred
                .iter()
                .map(|(f, why)| format!("wait {f}: {why}")),
        );
        list(
            &mut self.awaiting_retry.iter().map(|(f, id)| {
                format!("leave {f}: failed before, task {id} is the retry action's")
            }),
        );
        list(&mut self.given_up.iter().map(|(f, id)| {
            format!("leave {f}: task {id} is dead; change the file to send it again")
        }));
        list(
            &mut self
                .removed
                .iter()
                .map(|f| format!("removed {f}: recorded but gone from data_dir; left alone")),
        );
        list(
            &mut self
                .unreadable
                .iter()
                .map(|(f, e)| format!("unreadable {f}: {e}")),
        );
        out
    }
}

impl Plan {
    /// Puts a file where its decision says.
    fn place(&mut self, candidate: Candidate, decision: Decision) {
        match decision {
            Decision::Send { modified } => {
                self.modified += usize::from(modified);
                self.send.push(candidate);
            }
            Decision::Record(why) => self.record_only.push((candidate, why)),
            Decision::RecordAfter(original) => self.after_send.push((candidate, original)),
            Decision::LeaveToRetry(id) => self.awaiting_retry.push((candidate.shown(), id)),
            Decision::LeaveGivenUp(id) => self.given_up.push((candidate.shown(), id)),
        }
    }

    /// Puts a file whose content could not be taken where that leaves it. Its shown name
    /// is made only here: a storm's plan sends 10,000 files and shows ten.
    fn place_unread(&mut self, rel: &Path, unread: Unread) {
        let shown = file_key::display(rel);
        match unread {
            Unread::ChangedWhileRead => self
                .deferred
                .push((shown, "changed while it was read".to_owned())),
            Unread::Failed(e) => self.unreadable.push((shown, e)),
        }
    }
}

/// Builds the ingest plan from the scan, ingest_hash.json, the task queue and what the
/// watcher heard. A full walk marks every record it finds in `hashes` (see
/// [`IngestHash::begin_walk`]).
#[must_use]
pub fn plan(
    ctx: &Context<'_>,
    config: &IngestConfig,
    scan: Scan,
    hashes: &mut IngestHash,
    queue: &TaskQueue,
    hints: &WatcherHints,
) -> Plan {
    let mut plan = Plan {
        changed_only: scan.gone.is_some(),
        scanned: scan.found.len(),
        unreadable: scan.unreadable,
        ..Plan::default()
    };
    let walk = scan.gone.is_none().then(|| hashes.begin_walk());
    let mut to_hash = Vec::new();
    for file in scan.found {
        let key = key_of(&file.rel);
        let recorded = match walk {
            Some(generation) => hashes.mark(&key, generation),
            None => hashes.get(&key),
        };
        if recorded.and_then(Record::stat) == Some(file.stat) {
            plan.unchanged += 1;
        } else {
            to_hash.push((key.into_owned(), file));
        }
    }
    plan.removed = removed(ctx, hashes, walk, scan.gone.as_deref());
    if to_hash.is_empty() {
        return plan;
    }
    to_hash.sort_unstable_by(|a, b| a.1.rel.as_os_str().cmp(b.1.rel.as_os_str()));
    let hashes: &IngestHash = hashes;

    // Files still being written wait; the rest are read, side by side.
    let clock = ctx.plan_clock();
    let mut to_read = Vec::with_capacity(to_hash.len());
    for (key, file) in to_hash {
        let closed = hints.was_closed(&file.rel);
        match decide::waits(&clock, file.stat, config.settle, closed) {
            Some(why) => plan.deferred.push((file_key::display(&file.rel), why)),
            None => {
                let abs = ctx.paths.data_dir.join(&file.rel);
                to_read.push(ToRead { key, file, abs });
            }
        }
    }
    let progress = hash::progress_bar(ctx.progress, to_read.len());
    let (read, prehashed) = hash::read_all(hints, &to_read, &progress);
    plan.prehashed = prehashed;
    progress.finish_and_clear();

    let tasks = decide::open_tasks(queue);
    let by_hash = if config.skip_known_content {
        hashes.by_hash()
    } else {
        HashMap::new()
    };
    // Only the opt-in looks twins up: 100,000 new files need no second copy of every key
    // otherwise.
    let mut sending: HashMap<Digest, String> = HashMap::new();
    for (ToRead { key, file, abs }, read) in to_read.into_iter().zip(read) {
        plan.hashed += usize::from(read.is_ok());
        let hash = match decide::read_outcome(file.stat, read) {
            Ok(hash) => hash,
            Err(unread) => {
                plan.place_unread(&file.rel, unread);
                continue;
            }
        };
        let recorded = hashes.get(&key);
        let seen = Seen {
            has_record: recorded.is_some(),
            recorded: recorded.and_then(Record::hash),
            task: tasks.get(key.as_str()),
            recorded_as: by_hash.get(&hash).copied(),
            sending_as: sending.get(&hash).map(String::as_str),
        };
        let decision = decide::decide(hash, &seen);
        if config.skip_known_content && matches!(decision, Decision::Send { .. }) {
            sending.insert(hash, key.clone());
        }
        let candidate = Candidate {
            key,
            rel: file.rel,
            abs,
            stat: file.stat,
            hash,
        };
        plan.place(candidate, decision);
    }
    plan
}

/// Recorded files that are gone: of all records, those the walk `generation` did not find
/// (and that are not merely excluded); of an event run's changed paths, those gone.
fn removed(
    ctx: &Context<'_>,
    hashes: &IngestHash,
    walk: Option<u32>,
    gone: Option<&[PathBuf]>,
) -> Vec<String> {
    if let Some(generation) = walk {
        let mut removed: Vec<String> = hashes
            .unmarked(generation)
            .filter_map(file_key::path)
            .filter(|rel| std::fs::symlink_metadata(ctx.paths.data_dir.join(rel)).is_err())
            .map(|rel| file_key::display(&rel))
            .collect();
        removed.sort_unstable();
        return removed;
    }
    gone.unwrap_or_default()
        .iter()
        .filter(|rel| hashes.get(&key_of(rel)).is_some())
        .map(|rel| file_key::display(rel))
        .collect()
}

/// The key of a relative path, borrowed when the name is UTF-8 (nearly always): a walk
/// of 100,000 files makes no 100,000 strings to look them up.
fn key_of(rel: &Path) -> Cow<'_, str> {
    rel.to_str()
        .map_or_else(|| Cow::Owned(file_key::key(rel)), Cow::Borrowed)
}
