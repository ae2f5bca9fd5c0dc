//! The watchdog's judgement, pure: from what [`super::health`] read, the pipeline's
//! [`Status`] and its problems, worst first. Anything that loses data or needs a person
//! fails; anything that waits for a retry degrades.

use serde::Serialize;
use serde_json::Value;

use crate::model::words;

/// Items listed by id before the rest are counted.
pub(super) const LISTED: usize = 50;

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

/// What the judgement looks at.
#[derive(Debug, Default)]
pub(super) struct Evidence<'a> {
    /// State files that do not parse: `{"file", "error"}`.
    pub(super) unreadable_files: &'a [Value],
    pub(super) dead_tasks: &'a [String],
    pub(super) stuck_tasks: &'a [String],
    /// Tasks waiting for a retry (status `failed`).
    pub(super) failed_tasks: usize,
    pub(super) uploads_given_up: usize,
    pub(super) uploads_refused: usize,
    pub(super) refused_paths: &'a [String],
    pub(super) uploads_failed: usize,
    /// Open circuit breakers: `{"step", "until", "class"}`.
    pub(super) breakers: &'a [Value],
    /// Actions whose last run failed: (action, when, its summary).
    pub(super) failed_runs: Vec<(&'a str, &'a str, &'a str)>,
}

/// The status, and the problems that made it: failing ones, then degrading ones, then
/// `noticed` (problems the reading found, which degrade).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Judgement {
    pub(super) status: Status,
    pub(super) problems: Vec<String>,
}

pub(super) fn judge(e: &Evidence<'_>, mut noticed: Vec<String>) -> Judgement {
    let mut failing = Vec::new();
    let mut degraded = Vec::new();
    for u in e.unreadable_files {
        failing.push(format!(
            "state file does not parse: {}",
            u["error"].as_str().unwrap_or("")
        ));
    }
    if !e.dead_tasks.is_empty() {
        failing.push(format!(
            "{} (out of attempts): {}",
            words::count(e.dead_tasks.len(), "dead task", "dead tasks"),
            list(e.dead_tasks)
        ));
    }
    if !e.stuck_tasks.is_empty() {
        failing.push(format!(
            "{} stuck running: {}",
            words::count(e.stuck_tasks.len(), "task", "tasks"),
            list(e.stuck_tasks)
        ));
    }
    if e.uploads_given_up > 0 {
        failing.push(format!(
            "{} failed every attempt",
            words::count(e.uploads_given_up, "upload", "uploads")
        ));
    }
    if e.failed_tasks > 0 {
        degraded.push(format!(
            "{} for a retry",
            words::count(e.failed_tasks, "failed task waits", "failed tasks wait")
        ));
    }
    if e.uploads_refused > 0 {
        degraded.push(format!(
            "{} refused (outside the pipeline home, a NUL in the path, or an unsafe remote): {}",
            words::count(e.uploads_refused, "upload entry", "upload entries"),
            list(e.refused_paths)
        ));
    }
    if e.uploads_failed > 0 {
        degraded.push(format!(
            "{} for a retry",
            words::count(
                e.uploads_failed,
                "upload failed and waits",
                "uploads failed and wait"
            )
        ));
    }
    for b in e.breakers {
        degraded.push(format!(
            "retries of step {} paused until {} (circuit breaker: {})",
            b["step"].as_str().unwrap_or(""),
            b["until"].as_str().unwrap_or(""),
            b["class"].as_str().unwrap_or("")
        ));
    }
    for (action, at, summary) in &e.failed_runs {
        degraded.push(format!("the last {action} run failed at {at}: {summary}"));
    }
    let status = if !failing.is_empty() {
        Status::Failing
    } else if !degraded.is_empty() || !noticed.is_empty() {
        Status::Degraded
    } else {
        Status::Ok
    };
    failing.append(&mut degraded);
    failing.append(&mut noticed);
    Judgement {
        status,
        problems: failing,
    }
}

/// "a, b, c", or the first [`LISTED`] "and 7 more".
pub(super) fn list(ids: &[String]) -> String {
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
