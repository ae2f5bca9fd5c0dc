//! The ingest plan: which data files to send, which to record without sending, which to
//! leave (still being written, awaiting retry, given up) and why.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::io::{IsTerminal, Read};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest as _, Sha256};

use crate::actions::walk;
use crate::actions::{Context, Prehashed};
use crate::config::rules::IngestConfig;
use crate::error::{Error, Result};
use crate::model::action::Action;
use crate::model::file_key;
use crate::model::task_status::TaskStatus;
use crate::state::ingest_hash::{Digest, IngestHash, Record};
use crate::state::stat::Stat;
use crate::state::task_queue::TaskQueue;

/// Names listed per category in the plan's reasons before the rest are counted.
const LISTED: usize = 10;
/// Changed paths one thread looks at, at least, in an event run.
const PER_THREAD: usize = 1024;
/// Hashing more files than this shows a progress bar (on a terminal).
const PROGRESS_FROM: usize = 200;

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

/// Why a file is recorded without running the step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Known {
    /// Its content is what was recorded for it; only its stat changed (a touch, a copy back).
    Unmodified,
    /// The same content is already recorded under another path.
    SameContentAs(String),
    /// The retry action re-ran its failed ingest and the task (this id) is done.
    DoneByRetry(String),
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
    /// A file whose content failed before: its task decides (done by retry, given up, or
    /// the retry action's to finish).
    fn place_by_task(&mut self, candidate: Candidate, task: &IngestTask<'_>) {
        let id = task.id.to_owned();
        let shown = candidate.shown();
        match task.status {
            TaskStatus::Done => self.record_only.push((candidate, Known::DoneByRetry(id))),
            TaskStatus::Dead => self.given_up.push((shown, id)),
            TaskStatus::Pending
            | TaskStatus::Running
            | TaskStatus::Failed
            | TaskStatus::Other(_) => {
                self.awaiting_retry.push((shown, id));
            }
        }
    }
}

/// What the scan found, before any decision.
#[derive(Debug, Default)]
pub struct Scan {
    found: Vec<Found>,
    unreadable: Vec<(String, String)>,
    /// `None` for a walk of all of data_dir; else the changed paths (relative) that are
    /// gone.
    gone: Option<Vec<PathBuf>>,
}

/// A file found by the scan: only its relative path and stat, so a walk of 100,000 files
/// holds no more than that.
#[derive(Debug)]
struct Found {
    rel: PathBuf,
    stat: Stat,
}

/// Builds the ingest plan from the scan, ingest_hash.json and the task queue. A full walk
/// marks every record it finds in `hashes` (see [`IngestHash::begin_walk`]).
#[must_use]
pub fn plan(
    ctx: &Context<'_>,
    config: &IngestConfig,
    scan: Scan,
    hashes: &mut IngestHash,
    queue: &TaskQueue,
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
    let settled = settled(ctx, config, to_hash, &mut plan.deferred);
    let progress = progress_bar(ctx, settled.len());
    let (read, prehashed) = read_all(ctx, &settled, &progress);
    plan.prehashed = prehashed;
    progress.finish_and_clear();

    let tasks = open_tasks(queue);
    let by_hash = if config.skip_known_content {
        hashes.by_hash()
    } else {
        HashMap::new()
    };
    let mut sending: HashMap<Digest, String> = HashMap::new();
    for ((key, file, abs), read) in settled.into_iter().zip(read) {
        // Shown names are made only for the lines that show them (a storm sends 10,000).
        let shown = || file_key::display(&file.rel);
        let hash = match read {
            Ok(Hashed { hash, after }) => {
                plan.hashed += 1;
                // A file that changed while it was read is still being written.
                if after != Some(file.stat) {
                    plan.deferred
                        .push((shown(), "changed while it was read".to_owned()));
                    continue;
                }
                hash
            }
            Err(e) => {
                plan.unreadable.push((shown(), e.to_string()));
                continue;
            }
        };
        let candidate = Candidate {
            key: key.clone(),
            rel: file.rel,
            abs,
            stat: file.stat,
            hash,
        };
        let recorded = hashes.get(&key);
        if recorded.is_some_and(|r| r.hash() == Some(hash)) {
            plan.record_only.push((candidate, Known::Unmodified));
        } else if let Some(task) = tasks.get(key.as_str())
            && task.hash.and_then(Digest::parse) == Some(hash)
        {
            plan.place_by_task(candidate, task);
        } else if let Some(other) = by_hash.get(&hash) {
            // Opt-in (by_hash is empty otherwise): the index is keyed by content, so the
            // copy is already in it.
            plan.record_only
                .push((candidate, Known::SameContentAs((*other).to_owned())));
        } else if config.skip_known_content
            && let Some(original) = sending.get(&hash)
        {
            plan.after_send.push((candidate, original.clone()));
        } else {
            if recorded.is_some() {
                plan.modified += 1;
            }
            if config.skip_known_content {
                // Only the opt-in looks twins up: 100,000 new files need no second copy of
                // every key otherwise.
                sending.insert(hash, key);
            }
            plan.send.push(candidate);
        }
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

/// The files old enough to read, with their absolute paths; the others are `deferred`.
fn settled(
    ctx: &Context<'_>,
    config: &IngestConfig,
    to_hash: Vec<(String, Found)>,
    deferred: &mut Vec<(String, String)>,
) -> Vec<(String, Found, PathBuf)> {
    let mut settled = Vec::with_capacity(to_hash.len());
    for (key, file) in to_hash {
        let age = ctx
            .now
            .duration_since(mtime_of(file.stat))
            .unwrap_or(Duration::ZERO);
        // The watcher heard the writer close the file (or rename it into place): it is
        // complete whatever its mtime says. Otherwise its age must show it settled.
        if age < config.settle && !ctx.settled.contains(&file.rel) {
            let why = format!(
                "modified {} ago, waits until it is {} old",
                humantime::format_duration(round_ms(age)),
                humantime::format_duration(config.settle)
            );
            deferred.push((file_key::display(&file.rel), why));
        } else {
            let abs = ctx.paths.data_dir.join(&file.rel);
            settled.push((key, file, abs));
        }
    }
    settled
}

/// The key of a relative path, borrowed when the name is UTF-8 (nearly always): a walk
/// of 100,000 files makes no 100,000 strings to look them up.
fn key_of(rel: &Path) -> Cow<'_, str> {
    rel.to_str()
        .map_or_else(|| Cow::Owned(file_key::key(rel)), Cow::Borrowed)
}

fn mtime_of(stat: Stat) -> SystemTime {
    let ns = stat.mtime_ns;
    let d = Duration::from_nanos(ns.unsigned_abs());
    if ns >= 0 {
        UNIX_EPOCH + d
    } else {
        UNIX_EPOCH.checked_sub(d).unwrap_or(UNIX_EPOCH)
    }
}

/// The `ingest` task a file's earlier failure made.
#[derive(Debug)]
struct IngestTask<'a> {
    id: &'a str,
    status: TaskStatus,
    /// The file's content hash when it failed.
    hash: Option<&'a str>,
}

/// Ingest tasks by file key.
fn open_tasks(queue: &TaskQueue) -> HashMap<&str, IngestTask<'_>> {
    queue
        .tasks()
        .filter(|t| t.step() == Some(Action::Ingest.name()))
        .filter_map(|t| {
            let task = IngestTask {
                id: t.id()?,
                status: t.status()?,
                hash: t.hash(),
            };
            Some((t.file()?, task))
        })
        .collect()
}

/// Finds the memory files to look at: all of data_dir (`changed` is `None`), or only the
/// changed paths (relative to data_dir): a file is looked at when the ingest globs
/// take it, a folder is walked, and a path that is gone is checked against the records.
/// Only a missing data_dir is an error; anything unreadable below it is listed and
/// skipped.
pub fn scan(
    data_dir: &Path,
    config: &IngestConfig,
    changed: Option<&[PathBuf]>,
    heard: Heard<'_>,
) -> Result<Scan> {
    match std::fs::metadata(data_dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(Error::Scan {
                path: data_dir.to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotADirectory,
                    "data_dir is not a folder",
                ),
            });
        }
        Err(source) => {
            return Err(Error::Scan {
                path: data_dir.to_path_buf(),
                source,
            });
        }
    }
    let mut found = Vec::new();
    let mut visit = |rel: PathBuf, meta: &std::fs::Metadata| {
        found.push(Found {
            rel,
            stat: Stat::of(meta),
        });
    };
    let Some(changed) = changed else {
        let unreadable = walk::memory_files(data_dir, Path::new(""), config, &mut visit);
        return Ok(Scan {
            found,
            unreadable,
            gone: None,
        });
    };
    let base = Base::new(data_dir);
    // A storm names thousands of paths, each a stat and two glob matches: side by side
    // on every core (issue 8: the storm's run should start within the debounce).
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .min(changed.len().div_ceil(PER_THREAD))
        .max(1);
    let parts: Vec<Looked> = if threads == 1 {
        vec![look_at(&base, config, changed, heard)]
    } else {
        std::thread::scope(|s| {
            let handles: Vec<_> = changed
                .chunks(changed.len().div_ceil(threads))
                .map(|chunk| s.spawn(|| look_at(&base, config, chunk, heard)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("looking at paths does not panic"))
                .collect()
        })
    };
    let (mut unreadable, mut gone) = (Vec::new(), Vec::new());
    for part in parts {
        found.extend(part.found);
        unreadable.extend(part.unreadable);
        gone.extend(part.gone);
    }
    // A folder and a file in it may both have changed: each file is looked at once.
    found.sort_unstable_by(|a, b| a.rel.as_os_str().cmp(b.rel.as_os_str()));
    found.dedup_by(|a, b| a.rel == b.rel);
    gone.sort_unstable();
    gone.dedup();
    Ok(Scan {
        found,
        unreadable,
        gone: Some(gone),
    })
}

/// What looking at some changed paths found.
#[derive(Default)]
struct Looked {
    found: Vec<Found>,
    unreadable: Vec<(String, String)>,
    gone: Vec<PathBuf>,
}

/// data_dir as an event run's scan looks into it: open, so each changed file is looked
/// up by its relative path (a storm's 10,000 lookups need not walk data_dir's own path
/// 10,000 times).
struct Base<'a> {
    data_dir: &'a Path,
    folder: Option<std::fs::File>,
}

impl<'a> Base<'a> {
    fn new(data_dir: &'a Path) -> Base<'a> {
        Base {
            data_dir,
            folder: std::fs::File::open(data_dir).ok(),
        }
    }

    /// The `lstat` of `rel` (not empty), looked up from the open folder.
    fn lstat(&self, rel: &Path) -> std::io::Result<Looks> {
        let Some(folder) = &self.folder else {
            return std::fs::symlink_metadata(self.data_dir.join(rel)).map(|m| Looks::of(&m));
        };
        let st = nix::sys::stat::fstatat(
            Some(folder.as_raw_fd()),
            rel,
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(std::io::Error::from)?;
        let kind =
            nix::sys::stat::SFlag::from_bits_truncate(st.st_mode) & nix::sys::stat::SFlag::S_IFMT;
        Ok(match kind {
            nix::sys::stat::SFlag::S_IFDIR => Looks::Folder,
            nix::sys::stat::SFlag::S_IFREG => Looks::File(Stat::of_raw(&st)),
            _ => Looks::Other,
        })
    }
}

/// What the watcher already knows of the files it heard, for an event run's scan.
#[derive(Debug, Clone, Copy)]
pub struct Heard<'a> {
    /// Files complete: their writers closed them, or renamed them into place.
    pub settled: &'a HashSet<PathBuf>,
    /// Files read since the last change the watcher heard of them.
    pub prehashed: &'a Prehashed,
}

impl Heard<'_> {
    /// The stat of `rel` as the watcher read it, when that is still all it has heard:
    /// complete, and nothing written, moved or removed since (the prehasher drops what a
    /// later change makes stale). A change still on its way to the loop may be missed,
    /// as a change just after a lookup would be; its event brings the next run.
    fn stat(&self, rel: &Path) -> Option<Stat> {
        let (stat, _) = self.prehashed.get(rel)?;
        self.settled.contains(rel).then_some(*stat)
    }
}

/// What a changed path is now.
enum Looks {
    Folder,
    File(Stat),
    Other,
}

impl Looks {
    fn of(meta: &std::fs::Metadata) -> Looks {
        if meta.is_dir() {
            Looks::Folder
        } else if meta.is_file() {
            Looks::File(Stat::of(meta))
        } else {
            Looks::Other
        }
    }
}

/// Whether `rel` names a path under data_dir: relative, with no `..` (the watcher makes
/// none other; the check costs a scan of its bytes, components only when they hold "..").
fn stays_inside(rel: &Path) -> bool {
    let bytes = rel.as_os_str().as_bytes();
    if bytes.first() == Some(&b'/') {
        return false;
    }
    !bytes.windows(2).any(|w| w == b"..")
        || rel.components().all(|c| {
            matches!(
                c,
                std::path::Component::Normal(_) | std::path::Component::CurDir
            )
        })
}

/// Looks at each of `changed` (relative to data_dir): a memory file is found, a folder
/// walked, a missing path gone.
fn look_at(
    base: &Base<'_>,
    config: &IngestConfig,
    changed: &[PathBuf],
    heard: Heard<'_>,
) -> Looked {
    let mut looked = Looked::default();
    let mut in_folders = Vec::new();
    let mut visit = |rel: PathBuf, meta: &std::fs::Metadata| {
        in_folders.push(Found {
            rel,
            stat: Stat::of(meta),
        });
    };
    // A storm's paths share a few folders: each folder's globs are matched once, not once
    // per file in it.
    let mut last_folder: Option<(&Path, bool)> = None;
    for rel in changed {
        let rel = rel.as_path();
        if !stays_inside(rel) {
            continue;
        }
        let folder = rel.parent().unwrap_or(Path::new(""));
        let entered = match last_folder {
            Some((seen, entered)) if seen.as_os_str() == folder.as_os_str() => entered,
            _ => {
                let entered = folder
                    .ancestors()
                    .all(|a| a.as_os_str().is_empty() || walk::enters(config, a));
                last_folder = Some((folder, entered));
                entered
            }
        };
        if !entered {
            continue;
        }
        // A storm's files were read as their writers closed them: no second lookup.
        let looks = if rel.as_os_str().is_empty() {
            Ok(Looks::Folder)
        } else if let Some(stat) = heard.stat(rel) {
            Ok(Looks::File(stat))
        } else {
            base.lstat(rel)
        };
        match looks {
            Ok(Looks::Folder) => {
                if rel.as_os_str().is_empty() || walk::enters(config, rel) {
                    looked.unreadable.extend(walk::memory_files(
                        base.data_dir,
                        rel,
                        config,
                        &mut visit,
                    ));
                }
            }
            Ok(Looks::File(stat)) => {
                if walk::is_memory(config, rel) {
                    looked.found.push(Found {
                        rel: rel.to_path_buf(),
                        stat,
                    });
                }
            }
            Ok(Looks::Other) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                looked.gone.push(rel.to_path_buf());
            }
            Err(e) => looked
                .unreadable
                .push((file_key::display(rel), e.to_string())),
        }
    }
    looked.found.extend(in_folders);
    looked
}

/// What reading a file gave: its content hash, and its stat right after (a file that
/// changed while it was read is still being written).
struct Hashed {
    hash: Digest,
    after: Option<Stat>,
}

/// The hash and stat of each of `settled`, in order: taken from what the watcher read as
/// the writers closed their files when the stat still matches, read here otherwise (side
/// by side). Also how many came from the watcher.
fn read_all(
    ctx: &Context<'_>,
    settled: &[(String, Found, PathBuf)],
    progress: &ProgressBar,
) -> (Vec<std::io::Result<Hashed>>, usize) {
    let early: Vec<Option<std::io::Result<Hashed>>> = settled
        .iter()
        .map(|(_, file, _)| {
            ctx.prehashed
                .get(&file.rel)
                .filter(|(stat, _)| *stat == file.stat)
                .map(|(stat, hash)| {
                    Ok(Hashed {
                        hash: *hash,
                        after: Some(*stat),
                    })
                })
        })
        .collect();
    let prehashed = early.iter().filter(|e| e.is_some()).count();
    let paths: Vec<&Path> = settled
        .iter()
        .zip(&early)
        .filter(|(_, e)| e.is_none())
        .map(|((_, _, abs), _)| abs.as_path())
        .collect();
    let mut fresh = hash_all(&paths, progress).into_iter();
    let read = early
        .into_iter()
        .map(|e| {
            e.unwrap_or_else(|| {
                fresh
                    .next()
                    .unwrap_or_else(|| Err(std::io::ErrorKind::Interrupted.into()))
            })
        })
        .collect();
    (read, prehashed)
}

/// Hashes `files` side by side, one thread per core (issue 8: 10,000 new files took about
/// as long to hash as the debounce). Results come back in the order of `files`, each
/// written in place: no per-thread lists to merge for 100,000 files.
fn hash_all(files: &[&Path], progress: &ProgressBar) -> Vec<std::io::Result<Hashed>> {
    /// Files a worker takes at a time: small enough to share uneven files out, large
    /// enough that taking them costs nothing.
    const CHUNK: usize = 64;
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .min(files.len().div_ceil(CHUNK));
    let one = |path: &Path, buf: &mut Vec<u8>| {
        let hashed = hash_file(path, buf)?;
        progress.inc(1);
        Ok(hashed)
    };
    let mut results: Vec<std::io::Result<Hashed>> = Vec::with_capacity(files.len());
    results.resize_with(files.len(), || Err(std::io::ErrorKind::Interrupted.into()));
    let work = Mutex::new(files.chunks(CHUNK).zip(results.chunks_mut(CHUNK)));
    let worker = || {
        let mut buf = vec![0; 64 * 1024];
        loop {
            let next = work.lock().map(|mut w| w.next());
            let Ok(Some((paths, out))) = next else { break };
            for (path, slot) in paths.iter().zip(out) {
                *slot = one(path, &mut buf);
            }
        }
    };
    if threads <= 1 {
        worker();
    } else {
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(worker);
            }
        });
    }
    results
}

/// The content hash of `path` and its stat once read, reading through `buf` (a thread
/// that hashes file after file keeps one: zeroing 64 KiB per small file cost more than
/// hashing it).
pub fn hash_one(path: &Path, buf: &mut [u8]) -> std::io::Result<(Digest, Option<Stat>)> {
    hash_file(path, buf).map(|h| (h.hash, h.after))
}

/// The SHA-256 of the file's content, and the file's stat once it is read (from the open
/// file: no second lookup of its path). A file replaced by a rename meanwhile keeps the
/// old stat here, and its new inode sends it again next run.
fn hash_file(path: &Path, buf: &mut [u8]) -> std::io::Result<Hashed> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    loop {
        let n = file.read(buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let after = file.metadata().ok().map(|m| Stat::of(&m));
    Ok(Hashed {
        hash: Digest(hasher.finalize().into()),
        after,
    })
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn progress_bar(ctx: &Context<'_>, len: usize) -> ProgressBar {
    if !ctx.progress || len < PROGRESS_FROM || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template("hashing {bar:40} {pos}/{len} files ({eta} left)")
            .expect("the template is valid"),
    );
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_under_data_dir_are_looked_at() {
        for inside in ["a.txt", "d/b.txt", "a..b.txt", "..hidden/c.txt", ""] {
            assert!(stays_inside(Path::new(inside)), "{inside}");
        }
        for outside in ["/etc/passwd", "../x.txt", "d/../../x.txt", "d/.."] {
            assert!(!stays_inside(Path::new(outside)), "{outside}");
        }
    }

    #[test]
    fn a_lookup_from_the_open_folder_sees_what_lstat_sees() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/m.txt"), "memory").unwrap();
        std::os::unix::fs::symlink("sub/m.txt", dir.path().join("link.txt")).unwrap();
        let base = Base::new(dir.path());
        let meta = std::fs::symlink_metadata(dir.path().join("sub/m.txt")).unwrap();
        assert!(
            matches!(base.lstat(Path::new("sub/m.txt")), Ok(Looks::File(s)) if s == Stat::of(&meta))
        );
        assert!(matches!(base.lstat(Path::new("sub")), Ok(Looks::Folder)));
        assert!(matches!(
            base.lstat(Path::new("link.txt")),
            Ok(Looks::Other)
        ));
        let gone = base.lstat(Path::new("sub/gone.txt")).err().unwrap();
        assert_eq!(gone.kind(), std::io::ErrorKind::NotFound);
    }
}
