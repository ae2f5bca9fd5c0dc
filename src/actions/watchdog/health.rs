//! The pipeline's health, read from every state file and lock: what the watchdog writes to
//! watchdog_state.json and what `memsched status` shows.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

use serde::Serialize;
use serde_json::{Value, json};

use crate::action::Action;
use crate::actions::retry::{OpenBreaker, open_from_log};
use crate::error::Error;
use crate::file_key;
use crate::paths::Paths;
use crate::report::ActionReport;
use crate::rules::{Rules, defaults};
use crate::state::ingest_hash::{IngestHash, Record};
use crate::state::json_file::{self, ListDoc};
use crate::state::stat::Stat;
use crate::state::task_queue::TaskQueue;
use crate::state::timestamp;
use crate::state::upload_log::UploadLog;
use crate::task_status::TaskStatus;
use crate::upload_status::UploadStatus;
use crate::{lock, walk};

/// Items listed by id before the rest are counted.
const LISTED: usize = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Degraded,
    Failing,
}

impl Status {
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Degraded => "degraded",
            Status::Failing => "failing",
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct UploadHealth {
    pub outstanding: usize,
    pub failed: usize,
    pub given_up: usize,
    pub skipped: usize,
    pub uploaded: usize,
    /// Entries memsched would not upload (outside the home, a NUL, an unsafe remote).
    pub refused: usize,
    /// The first refused entries' paths, as written.
    pub refused_paths: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LastRun {
    pub at: String,
    pub outcome: String,
    pub summary: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Health {
    pub status: Status,
    pub checked_at: String,
    /// Why the status is not ok, one sentence each.
    pub problems: Vec<String>,
    /// Tasks by status.
    pub tasks: BTreeMap<String, usize>,
    pub stuck_tasks: Vec<String>,
    pub dead_tasks: Vec<String>,
    pub uploads: UploadHealth,
    /// Data files whose stat does not match ingest_hash.json (new, changed or touched).
    pub unindexed_files: Option<usize>,
    pub data_files: Option<usize>,
    pub last_runs: BTreeMap<String, LastRun>,
    pub breakers: Vec<Value>,
    /// State files that do not parse: (file, error).
    pub unreadable_files: Vec<Value>,
    /// Locks held by a live process other than this one: name -> pid.
    pub locks: BTreeMap<String, u32>,
    /// The running watcher's own report, if one runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watcher: Option<Value>,
}

/// Reads everything and judges. `current` holds the reports of this run so far, which are
/// not in scheduler_log.json yet.
#[must_use]
pub fn assess(paths: &Paths, rules: &Rules, current: &[ActionReport], now: SystemTime) -> Health {
    let mut h = Health {
        status: Status::Ok,
        checked_at: timestamp(now),
        problems: Vec::new(),
        tasks: BTreeMap::new(),
        stuck_tasks: Vec::new(),
        dead_tasks: Vec::new(),
        uploads: UploadHealth::default(),
        unindexed_files: None,
        data_files: None,
        last_runs: BTreeMap::new(),
        breakers: Vec::new(),
        unreadable_files: Vec::new(),
        locks: BTreeMap::new(),
        watcher: None,
    };
    let unreadable = |e: &Error| {
        let file = match e {
            Error::StateParse { path, .. }
            | Error::StateShape { path, .. }
            | Error::StateRead { path, .. } => path.display().to_string(),
            _ => String::new(),
        };
        json!({"file": file, "error": e.chain()})
    };
    match TaskQueue::load(&paths.task_queue) {
        Ok(q) => tasks(&mut h, &q, rules, now),
        Err(e) => h.unreadable_files.push(unreadable(&e)),
    }
    match UploadLog::load(&paths.upload_log) {
        Ok(log) => uploads(&mut h, &log, rules),
        Err(e) => h.unreadable_files.push(unreadable(&e)),
    }
    match IngestHash::load(&paths.ingest_hash) {
        Ok(hashes) => unindexed(&mut h, paths, rules, &hashes),
        Err(e) => h.unreadable_files.push(unreadable(&e)),
    }
    match json_file::read(&paths.watchdog_state) {
        Ok(state) => watcher(&mut h, state.as_ref().and_then(|s| s.get("watcher"))),
        Err(e) => h.unreadable_files.push(unreadable(&e)),
    }
    let mut runs = match ListDoc::load(&paths.scheduler_log, "runs") {
        Ok(doc) => doc.items().to_vec(),
        Err(e) => {
            h.unreadable_files.push(unreadable(&e));
            Vec::new()
        }
    };
    runs.push(json!({"started_at": timestamp(now), "actions": current}));
    last_runs(&mut h, &runs);
    h.breakers = open_from_log(&runs, now)
        .iter()
        .map(OpenBreaker::to_json)
        .collect();
    for name in Action::ALL
        .map(Action::name)
        .into_iter()
        .chain(["scheduler"])
    {
        if let Some(pid) = live_holder(&paths.action_lock(name)) {
            h.locks.insert(name.to_owned(), pid);
        }
    }
    judge(&mut h);
    h
}

fn tasks(h: &mut Health, queue: &TaskQueue, rules: &Rules, now: SystemTime) {
    let stuck_after = rules
        .retry
        .as_ref()
        .map_or(defaults::STUCK_AFTER, |r| r.stuck_after);
    h.problems.extend(
        queue
            .malformed()
            .into_iter()
            .map(|m| format!("task_queue.json: {m}")),
    );
    for t in queue.tasks() {
        let status = t.status();
        let shown = status.as_ref().map_or("(none)", TaskStatus::name);
        *h.tasks.entry(shown.to_owned()).or_default() += 1;
        let id = t.id().unwrap_or("(no id)").to_owned();
        if status == Some(TaskStatus::Dead) {
            h.dead_tasks.push(id);
        } else if t.is_stuck(now, stuck_after) {
            h.stuck_tasks.push(id);
        }
    }
}

fn uploads(h: &mut Health, log: &UploadLog, rules: &Rules) {
    let max = rules
        .upload
        .as_ref()
        .map_or(defaults::MAX_ATTEMPTS, |u| u.max_attempts);
    for e in log.entries() {
        match e.status() {
            UploadStatus::Uploaded => h.uploads.uploaded += 1,
            UploadStatus::Skipped => h.uploads.skipped += 1,
            UploadStatus::Refused => {
                h.uploads.refused += 1;
                if h.uploads.refused_paths.len() < LISTED {
                    let path = e.path().unwrap_or("(no path)");
                    h.uploads
                        .refused_paths
                        .push(path.escape_debug().to_string());
                }
            }
            UploadStatus::Failed if e.attempts() >= u64::from(max) => h.uploads.given_up += 1,
            UploadStatus::Failed => {
                h.uploads.failed += 1;
                h.uploads.outstanding += 1;
            }
            UploadStatus::Pending | UploadStatus::Other(_) => h.uploads.outstanding += 1,
        }
    }
}

fn unindexed(h: &mut Health, paths: &Paths, rules: &Rules, hashes: &IngestHash) {
    let Some(config) = &rules.ingest else { return };
    if !paths.data_dir.is_dir() {
        h.problems.push(format!(
            "data_dir {} does not exist",
            paths.data_dir.display()
        ));
        return;
    }
    let (mut files, mut stale) = (0, 0);
    walk::memory_files(&paths.data_dir, Path::new(""), config, &mut |rel, meta| {
        files += 1;
        let recorded = hashes.get(&file_key::key(&rel)).and_then(Record::stat);
        if recorded != Some(Stat::of(meta)) {
            stale += 1;
        }
    });
    h.data_files = Some(files);
    h.unindexed_files = Some(stale);
}

/// What the watcher last said about itself (see `daemon`), while it still runs.
fn watcher(h: &mut Health, watcher: Option<&Value>) {
    let Some(w) = watcher else { return };
    let alive = w
        .get("pid")
        .and_then(Value::as_u64)
        .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
    if !alive {
        return;
    }
    if let Some(e) = w.get("rules_error").and_then(Value::as_str) {
        h.problems
            .push(format!("the watcher keeps its last good rules: {e}"));
    }
    if w.pointer("/canary/status").and_then(Value::as_str) == Some("missed") {
        h.problems.push(format!(
            "the watcher missed its liveness canary at {} and was rebuilt ({} now)",
            w.pointer("/canary/at")
                .and_then(Value::as_str)
                .unwrap_or("?"),
            w.get("kind").and_then(Value::as_str).unwrap_or("?")
        ));
    }
    h.watcher = Some(w.clone());
}

fn last_runs(h: &mut Health, runs: &[Value]) {
    for run in runs {
        let at = run.get("started_at").and_then(Value::as_str).unwrap_or("");
        for a in run
            .get("actions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let outcome = a.get("outcome").and_then(Value::as_str).unwrap_or("");
            let Some(action) = a.get("action").and_then(Value::as_str) else {
                continue;
            };
            if outcome == "skipped" || outcome == "would-run" {
                continue;
            }
            h.last_runs.insert(
                action.to_owned(),
                LastRun {
                    at: at.to_owned(),
                    outcome: outcome.to_owned(),
                    summary: a
                        .get("summary")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                },
            );
        }
    }
}

/// The pid written in a lock file, when that process is alive and is not us. Reading the
/// file takes no lock, so looking never makes a real run skip.
fn live_holder(path: &Path) -> Option<u32> {
    let pid = lock::holder_pid(path)?;
    (pid != std::process::id() && Path::new(&format!("/proc/{pid}")).exists()).then_some(pid)
}

fn list(ids: &[String]) -> String {
    let mut shown = ids
        .iter()
        .take(LISTED)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if ids.len() > LISTED {
        shown.push_str(&format!(" and {} more", ids.len() - LISTED));
    }
    shown
}

fn judge(h: &mut Health) {
    let mut failing = Vec::new();
    let mut degraded = Vec::new();
    for u in &h.unreadable_files {
        failing.push(format!(
            "state file does not parse: {}",
            u["error"].as_str().unwrap_or("")
        ));
    }
    if !h.dead_tasks.is_empty() {
        failing.push(format!(
            "{} dead tasks (out of attempts): {}",
            h.dead_tasks.len(),
            list(&h.dead_tasks)
        ));
    }
    if !h.stuck_tasks.is_empty() {
        failing.push(format!(
            "{} tasks stuck running: {}",
            h.stuck_tasks.len(),
            list(&h.stuck_tasks)
        ));
    }
    if h.uploads.given_up > 0 {
        failing.push(format!(
            "{} uploads failed every attempt",
            h.uploads.given_up
        ));
    }
    if let Some(n) = h.tasks.get(TaskStatus::Failed.name()).filter(|n| **n > 0) {
        degraded.push(format!("{n} failed tasks wait for a retry"));
    }
    if h.uploads.refused > 0 {
        degraded.push(format!(
            "{} upload entries refused (outside the pipeline home, a NUL in the path, or an unsafe remote): {}",
            h.uploads.refused,
            list(&h.uploads.refused_paths)
        ));
    }
    if h.uploads.failed > 0 {
        degraded.push(format!(
            "{} uploads failed and wait for a retry",
            h.uploads.failed
        ));
    }
    for b in &h.breakers {
        degraded.push(format!(
            "retries of step {} paused until {} (circuit breaker: {})",
            b["step"].as_str().unwrap_or(""),
            b["until"].as_str().unwrap_or(""),
            b["class"].as_str().unwrap_or("")
        ));
    }
    for (action, run) in &h.last_runs {
        if run.outcome == "failed" {
            degraded.push(format!(
                "the last {action} run failed at {}: {}",
                run.at, run.summary
            ));
        }
    }
    h.status = if !failing.is_empty() {
        Status::Failing
    } else if !degraded.is_empty() || !h.problems.is_empty() {
        Status::Degraded
    } else {
        Status::Ok
    };
    failing.append(&mut degraded);
    failing.append(&mut h.problems);
    h.problems = failing;
}
