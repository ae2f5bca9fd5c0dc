//! The ingest plan: which data files to send, which to record without sending, which to
//! leave (still being written, awaiting retry, given up) and why.

use std::collections::{HashMap, HashSet};
use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

use crate::action::Action;
use crate::actions::Context;
use crate::error::{Error, Result};
use crate::file_key;
use crate::rules::IngestConfig;
use crate::state::ingest_hash::IngestHash;
use crate::state::stat::Stat;
use crate::state::task_queue::TaskQueue;
use crate::task_status::TaskStatus;
use crate::walk;

/// Names listed per category in the plan's reasons before the rest are counted.
const LISTED: usize = 10;
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
    pub hash: String,
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
    /// Files matching the include globs.
    pub scanned: usize,
    /// Files whose stat matched the record: not read at all.
    pub unchanged: usize,
    /// Files whose content was read and hashed.
    pub hashed: usize,
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
    /// Whether there is anything to execute.
    #[must_use]
    pub fn has_work(&self) -> bool {
        !self.send.is_empty() || !self.record_only.is_empty()
    }

    /// One line per decision worth explaining, capped per category.
    #[must_use]
    pub fn reasons(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut list = |items: Vec<String>| {
            let more = items.len().saturating_sub(LISTED);
            out.extend(items.into_iter().take(LISTED));
            if more > 0 {
                out.push(format!("… and {more} more like the line above"));
            }
        };
        list(
            self.send
                .iter()
                .map(|c| format!("send {}: content not yet ingested", c.shown()))
                .collect(),
        );
        list(
            self.record_only
                .iter()
                .map(|(c, why)| match why {
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
                        file_key::path(other)
                            .map_or_else(|| other.clone(), |p| file_key::display(&p))
                    ),
                })
                .collect(),
        );
        list(
            self.after_send
                .iter()
                .map(|(c, _)| {
                    format!(
                        "record {} once its twin in this run is done: same content",
                        c.shown()
                    )
                })
                .collect(),
        );
        list(
            self.deferred
                .iter()
                .map(|(f, why)| format!("wait {f}: {why}"))
                .collect(),
        );
        list(
            self.awaiting_retry
                .iter()
                .map(|(f, id)| format!("leave {f}: failed before, task {id} is the retry action's"))
                .collect(),
        );
        list(
            self.given_up
                .iter()
                .map(|(f, id)| {
                    format!("leave {f}: task {id} is dead; change the file to send it again")
                })
                .collect(),
        );
        list(
            self.removed
                .iter()
                .map(|f| format!("removed {f}: recorded but gone from data_dir; left alone"))
                .collect(),
        );
        list(
            self.unreadable
                .iter()
                .map(|(f, e)| format!("unreadable {f}: {e}"))
                .collect(),
        );
        out
    }
}

impl Plan {
    /// A file whose content failed before: its task decides (done by retry, given up, or
    /// the retry action's to finish).
    fn place_by_task(&mut self, candidate: Candidate, shown: String, task: &IngestTask<'_>) {
        let id = task.id.to_owned();
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

/// What the scan of data_dir found, before any decision.
#[derive(Debug, Default)]
pub struct Scan {
    found: Vec<Found>,
    unreadable: Vec<(String, String)>,
}

/// A file found by the scan.
#[derive(Debug)]
struct Found {
    rel: PathBuf,
    abs: PathBuf,
    stat: Stat,
    mtime: SystemTime,
}

/// Builds the ingest plan from the scan of data_dir, ingest_hash.json and the task queue.
#[must_use]
pub fn plan(
    ctx: &Context<'_>,
    config: &IngestConfig,
    scan: Scan,
    hashes: &IngestHash,
    queue: &TaskQueue,
) -> Plan {
    let mut plan = Plan {
        scanned: scan.found.len(),
        unreadable: scan.unreadable,
        ..Plan::default()
    };
    let found = scan.found;

    let mut seen: HashSet<String> = HashSet::with_capacity(found.len());
    let mut to_hash = Vec::new();
    for file in found {
        let key = file_key::key(&file.rel);
        let cached = hashes.get(&key).is_some_and(|r| r.stat == Some(file.stat));
        if cached {
            plan.unchanged += 1;
        } else {
            to_hash.push((key.clone(), file));
        }
        seen.insert(key);
    }
    for key in hashes.keys().filter(|k| !seen.contains(*k)) {
        if let Some(rel) = file_key::path(key)
            && std::fs::symlink_metadata(ctx.paths.data_dir.join(&rel)).is_err()
        {
            plan.removed.push(file_key::display(&rel));
        }
    }
    if to_hash.is_empty() {
        return plan;
    }

    let tasks = open_tasks(queue);
    let by_hash = hashes.by_hash();
    let mut sending: HashMap<String, String> = HashMap::new();
    let progress = progress_bar(ctx, to_hash.len());
    for (key, file) in to_hash {
        progress.inc(1);
        let shown = file_key::display(&file.rel);
        let age = ctx.now.duration_since(file.mtime).unwrap_or(Duration::ZERO);
        // The watcher heard the writer close the file (or rename it into place): it is
        // complete whatever its mtime says. Otherwise its age must show it settled.
        if age < config.settle && !ctx.settled.contains(&file.rel) {
            let why = format!(
                "modified {} ago, waits until it is {} old",
                humantime::format_duration(round_ms(age)),
                humantime::format_duration(config.settle)
            );
            plan.deferred.push((shown, why));
            continue;
        }
        let hash = match hash_file(&file.abs) {
            Ok(h) => h,
            Err(e) => {
                plan.unreadable.push((shown, e.to_string()));
                continue;
            }
        };
        plan.hashed += 1;
        // A file that changed while it was read is still being written.
        match std::fs::symlink_metadata(&file.abs) {
            Ok(meta) if Stat::of(&meta) == file.stat => {}
            _ => {
                plan.deferred
                    .push((shown, "changed while it was read".to_owned()));
                continue;
            }
        }
        let candidate = Candidate {
            key: key.clone(),
            rel: file.rel,
            abs: file.abs,
            stat: file.stat,
            hash,
        };
        let recorded = hashes.get(&key);
        if recorded.is_some_and(|r| r.hash == candidate.hash) {
            plan.record_only.push((candidate, Known::Unmodified));
        } else if let Some(task) = tasks.get(key.as_str())
            && task.hash == Some(candidate.hash.as_str())
        {
            plan.place_by_task(candidate, shown, task);
        } else if config.skip_known_content
            && let Some(other) = by_hash.get(&candidate.hash)
        {
            // Opt-in: the index is keyed by content, so the copy is already in it.
            plan.record_only
                .push((candidate, Known::SameContentAs(other.clone())));
        } else if config.skip_known_content
            && let Some(original) = sending.get(&candidate.hash)
        {
            plan.after_send.push((candidate, original.clone()));
        } else {
            if recorded.is_some() {
                plan.modified += 1;
            }
            sending.insert(candidate.hash.clone(), key);
            plan.send.push(candidate);
        }
    }
    progress.finish_and_clear();
    plan
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

/// Walks data_dir, pruning excluded folders, keeping regular files that match the include
/// globs and not the exclude globs. Only a missing data_dir is an error; anything
/// unreadable below it is listed and skipped.
pub fn scan(data_dir: &Path, config: &IngestConfig) -> Result<Scan> {
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
    let walk = walk::memory_files(data_dir, config);
    let found = walk
        .files
        .into_iter()
        .map(|f| Found {
            stat: Stat::of(&f.meta),
            mtime: f.meta.modified().unwrap_or(UNIX_EPOCH),
            rel: f.rel,
            abs: f.abs,
        })
        .collect();
    Ok(Scan {
        found,
        unreadable: walk.unreadable,
    })
}

/// `sha256:<hex>` of the file's content.
fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("sha256:{:x}", hasher.finalize()))
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
