//! The ingest plan: which data files to send, which to record without sending, which to
//! leave (still being written, awaiting retry, given up) and why. Built from the scan,
//! the hashes and one pure [`decide`](super::decide::decide) per file.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub use super::decide::Known;
use super::decide::{self, Age, Back, Decision, Removals, Seen, Unread};
use super::hash::{self, ToRead};
use super::hints::WatcherHints;
use super::scan::{Found, Scan};
use super::twins;
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
    /// Files read without waiting to settle because their mtime is ahead of the clock by
    /// more than `settle`: (file, by how much).
    pub ahead_of_clock: Vec<(String, std::time::Duration)>,
    /// Files whose earlier failure is a task the retry action owns: (file, task id).
    pub awaiting_retry: Vec<(String, String)>,
    /// Files whose task is dead: (file, task id). Changing the file sends it again.
    pub given_up: Vec<(String, String)>,
    /// Recorded files no longer in data_dir, with no `remove` command to tell: reported,
    /// their records kept (until `memsched forget`).
    pub removed: Vec<String>,
    /// Memories gone from data_dir, for the `remove` step (its records carry the hash and
    /// stat they were recorded with); dropped once the step confirms each.
    pub remove: Vec<Candidate>,
    /// Memories gone, held back from the `remove` step until a person confirms
    /// (`--confirm-removals`), and why.
    pub held: Vec<Candidate>,
    pub held_why: String,
    /// Keys of records whose file this run found gone for the first time: marked as
    /// pending removals (`gone_at`), so a restored file is never taken as indexed.
    pub newly_gone: Vec<String>,
    /// Records trusted on a stat without a change time (written by an older memsched):
    /// completed with the one found, so the next rewrite is seen (issue 18 item 6).
    pub complete: Vec<(String, Stat)>,
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
        !self.send.is_empty() || !self.record_only.is_empty() || !self.remove.is_empty()
    }

    /// Every memory found gone: told, held back, or left alone.
    #[must_use]
    pub fn gone(&self) -> usize {
        self.removed.len() + self.remove.len() + self.held.len()
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
            Known::Back => format!(
                "record {}: back as it was before its removal was confirmed; kept",
                c.shown()
            ),
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
        list(&mut self.ahead_of_clock.iter().map(|(f, by)| {
            format!(
                "read {f} without waiting: its mtime is in the future ({} ahead of the clock: a clock set wrong, an archive's time stamp), which says nothing of a writer",
                humantime::format_duration(std::time::Duration::from_secs(by.as_secs()))
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
                .map(|f| format!("removed {f}: recorded but gone from data_dir; no remove command tells the index (memsched forget acknowledges it)")),
        );
        list(
            &mut self
                .remove
                .iter()
                .map(|c| format!("remove {}: gone from data_dir", c.shown())),
        );
        list(&mut self.held.iter().map(|c| {
            format!(
                "hold {}: gone from data_dir, but {}",
                c.shown(),
                self.held_why
            )
        }));
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

    /// Puts the memories found gone where the removal policy says: for the `remove` step,
    /// held back, or (no `remove` command) left alone; those found gone for the first
    /// time are marked as pending removals.
    fn place_gone(
        &mut self,
        config: &IngestConfig,
        hashes: &IngestHash,
        gone: Vec<Candidate>,
        new_paths: usize,
        emptied: bool,
        confirmed: bool,
    ) {
        self.newly_gone = gone
            .iter()
            .filter(|c| hashes.get(&c.key).is_some_and(|r| r.gone_at().is_none()))
            .map(|c| c.key.clone())
            .collect();
        match decide::removals(
            gone.len(),
            gone.len().saturating_sub(new_paths),
            hashes.len(),
            emptied,
            config.remove.is_some(),
            config.max_remove,
            confirmed,
        ) {
            Removals::LeaveAlone => self.removed = gone.iter().map(Candidate::shown).collect(),
            Removals::Tell => self.remove = gone,
            Removals::Hold(why) => {
                self.held = gone;
                self.held_why = why;
            }
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
    confirm_removals: bool,
) -> Plan {
    let mut plan = Plan {
        changed_only: scan.gone.is_some(),
        scanned: scan.found.len(),
        unreadable: scan.unreadable,
        ..Plan::default()
    };
    let walk = scan.gone.is_none().then(|| hashes.begin_walk());
    let mut found = scan.found;
    if walk.is_none() {
        twins::add(&ctx.paths.data_dir, config, hashes, hints, &mut found);
        plan.scanned = found.len();
    }
    let mut to_hash = not_cached(&mut plan, found, hashes, walk, hints);
    let gone = removed(ctx, config, hashes, walk, scan.gone.as_deref());
    let emptied = walk.is_some() && plan.scanned == 0 && plan.unreadable.is_empty();
    if to_hash.is_empty() {
        plan.place_gone(config, hashes, gone, 0, emptied, confirm_removals);
        return plan;
    }
    to_hash.sort_unstable_by(|a, b| a.1.rel.as_os_str().cmp(b.1.rel.as_os_str()));
    let hashes: &IngestHash = hashes;

    // Files still being written wait; the rest are read, side by side.
    let clock = ctx.plan_clock();
    let mut to_read = Vec::with_capacity(to_hash.len());
    for (key, file) in to_hash {
        let closed = hints.was_closed(&file.rel) || file.heard;
        match decide::age(&clock, file.stat, config.settle, closed) {
            Age::Young(why) => plan.deferred.push((file_key::display(&file.rel), why)),
            settled_or_ahead => {
                if let Age::Ahead(by) = settled_or_ahead {
                    plan.ahead_of_clock.push((file_key::display(&file.rel), by));
                }
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
            back: recorded.and_then(|r| back(r, config)),
        };
        let decision = decide::decide(hash, &seen);
        // Read because its writer was heard, and found exactly as recorded: nothing to do.
        let as_recorded = recorded.and_then(Record::stat) == Some(file.stat);
        if as_recorded && decision == Decision::Record(Known::Unmodified) {
            plan.unchanged += 1;
            continue;
        }
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
    // A gone memory whose content this run sends under a new path was renamed: it offsets
    // one removal (a renamed folder is no folder vanishing; a new, unrelated file is no
    // excuse to empty the index).
    let gone_content: std::collections::HashSet<Digest> = gone.iter().map(|c| c.hash).collect();
    let renamed = plan
        .send
        .iter()
        .filter(|c| hashes.get(&c.key).is_none() && gone_content.contains(&c.hash))
        .count();
    plan.place_gone(config, hashes, gone, renamed, emptied, confirm_removals);
    plan
}

/// What a record that cannot simply be trusted means when its file is found with the
/// recorded content: `None` for a record that can. One the index may no longer hold (a
/// removal was sent, a newer send failed) is sent again; a pending removal never sent
/// (held back) is kept; without a `remove` step, a restored file is sent again.
fn back(record: &Record, config: &IngestConfig) -> Option<Back> {
    if record.stale_at().is_some() {
        return Some(Back::Resend);
    }
    record.gone_at().map(|_| match config.remove {
        Some(_) => Back::Kept,
        None => Back::Resend,
    })
}

/// The files the stat cache cannot vouch for, to be read; the rest are counted unchanged
/// (and marked as found by the walk `walk`, if any).
fn not_cached(
    plan: &mut Plan,
    found: Vec<Found>,
    hashes: &mut IngestHash,
    walk: Option<u32>,
    hints: &WatcherHints,
) -> Vec<(String, Found)> {
    let mut to_hash = Vec::new();
    for file in found {
        let key = key_of(&file.rel);
        let recorded = match walk {
            Some(generation) => hashes.mark(&key, generation),
            None => hashes.get(&key),
        };
        // A pending removal's file found again is looked at whatever its stat: whether it
        // is kept or sent again depends on its content. So is a file whose writer the
        // watcher heard close: a rewrite within one tick of the change-time clock leaves
        // every field of the stat as it was (issue 18 item 6).
        // So is a record the index may no longer hold (stale).
        let pending_removal =
            recorded.is_some_and(|r| r.gone_at().is_some() || r.stale_at().is_some());
        let heard = walk.is_none() && (hints.was_closed(&file.rel) || file.heard);
        let cached = recorded.and_then(Record::stat);
        if cached.is_some_and(|r| file.stat.matches(&r)) && !pending_removal && !heard {
            plan.unchanged += 1;
            if cached.is_some_and(|r| r.ctime_ns.is_none()) {
                plan.complete.push((key.into_owned(), file.stat));
            }
        } else {
            to_hash.push((key.into_owned(), file));
        }
    }
    to_hash
}

/// Recorded files that are gone: of all records, those the walk `generation` did not find
/// (and that are not merely excluded); of an event run's changed paths, those gone. Each
/// with the hash and stat its record holds, in path order.
fn removed(
    ctx: &Context<'_>,
    config: &IngestConfig,
    hashes: &IngestHash,
    walk: Option<u32>,
    gone: Option<&[PathBuf]>,
) -> Vec<Candidate> {
    let data_dir = &ctx.paths.data_dir;
    let keys: Vec<String> = match walk {
        Some(generation) => hashes.unmarked(generation).map(str::to_owned).collect(),
        None => gone_in_event_run(data_dir, config, hashes, gone.unwrap_or_default()),
    };
    let mut out: Vec<Candidate> = keys
        .into_iter()
        .filter_map(|key| {
            let rel = file_key::path(&key)?;
            let abs = data_dir.join(&rel);
            // What the walk would not take as a memory (a link, a folder, a FIFO where the
            // file was) is gone as a memory: its old text must not stay searchable.
            if std::fs::symlink_metadata(&abs).is_ok_and(|m| m.is_file()) {
                return None;
            }
            let record = hashes.get(&key)?;
            Some(Candidate {
                key: key.clone(),
                rel,
                abs,
                stat: record.stat().unwrap_or_default(),
                hash: record.hash().unwrap_or(Digest([0; 32])),
            })
        })
        .collect();
    out.sort_unstable_by(|a, b| a.rel.as_os_str().cmp(b.rel.as_os_str()));
    out
}

/// The records an event run's gone paths account for: a gone file's own, and every record
/// under a gone folder (a folder renamed or moved out of data_dir takes its memories with
/// it). One pass over the records, only when a gone path that is no record could have
/// been a folder ingest enters (an editor's deleted `.swp` is not).
fn gone_in_event_run(
    data_dir: &Path,
    config: &IngestConfig,
    hashes: &IngestHash,
    gone: &[PathBuf],
) -> Vec<String> {
    let mut keys = Vec::new();
    let mut folders = Vec::new();
    for rel in gone {
        let key = key_of(rel).into_owned();
        if hashes.get(&key).is_some() {
            keys.push(key);
        } else if crate::actions::walk::enters(config, rel)
            && std::fs::symlink_metadata(data_dir.join(rel)).is_err()
        {
            folders.push(format!("{key}/"));
        }
    }
    if !folders.is_empty() {
        keys.extend(
            hashes
                .keys()
                .filter(|key| folders.iter().any(|f| key.starts_with(f.as_str())))
                .map(str::to_owned),
        );
        keys.sort_unstable();
        keys.dedup();
    }
    keys
}

/// The key of a relative path, borrowed when the name is UTF-8 (nearly always): a walk
/// of 100,000 files makes no 100,000 strings to look them up.
fn key_of(rel: &Path) -> Cow<'_, str> {
    rel.to_str()
        .map_or_else(|| Cow::Owned(file_key::key(rel)), Cow::Borrowed)
}
