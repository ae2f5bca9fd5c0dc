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
pub(crate) enum Status {
    Ok,
    Degraded,
    Failing,
}

impl Status {
    #[must_use]
    pub(crate) fn name(self) -> &'static str {
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
    // The error names the file, its line and column, and what is wrong: said once.
    for u in e.unreadable_files {
        failing.push(u["error"].as_str().unwrap_or("").to_owned());
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("t{i}")).collect()
    }

    #[test]
    fn what_loses_data_or_needs_a_person_fails() {
        let dead = ids(2);
        let stuck = ids(1);
        let unreadable = [
            json!({"file": "q.json", "error": "q.json:1:2: state file does not parse, left untouched: bad json"}),
        ];
        // (case, evidence, status, the first problem)
        let cases: Vec<(&str, Evidence<'_>, Status, Option<&str>)> = vec![
            ("nothing wrong", Evidence::default(), Status::Ok, None),
            (
                "a state file that does not parse",
                Evidence {
                    unreadable_files: &unreadable,
                    ..Evidence::default()
                },
                Status::Failing,
                Some("q.json:1:2: state file does not parse, left untouched: bad json"),
            ),
            (
                "dead tasks",
                Evidence {
                    dead_tasks: &dead,
                    ..Evidence::default()
                },
                Status::Failing,
                Some("2 dead tasks (out of attempts): t1, t2"),
            ),
            (
                "a stuck task",
                Evidence {
                    stuck_tasks: &stuck,
                    ..Evidence::default()
                },
                Status::Failing,
                Some("1 task stuck running: t1"),
            ),
            (
                "uploads that failed every attempt",
                Evidence {
                    uploads_given_up: 1,
                    ..Evidence::default()
                },
                Status::Failing,
                Some("1 upload failed every attempt"),
            ),
        ];
        for (case, evidence, status, first) in cases {
            let judged = judge(&evidence, Vec::new());
            assert_eq!(judged.status, status, "{case}");
            assert_eq!(judged.problems.first().map(String::as_str), first, "{case}");
        }
    }

    #[test]
    fn what_waits_for_a_retry_degrades() {
        let breaker =
            [json!({"step": "ingest", "until": "2026-11-26T12:05:00Z", "class": "exit 1"})];
        let refused = ["/etc/passwd".to_owned()];
        let cases: Vec<(&str, Evidence<'_>, Status, Option<&str>)> = vec![
            (
                "failed tasks waiting",
                Evidence {
                    failed_tasks: 3,
                    ..Evidence::default()
                },
                Status::Degraded,
                Some("3 failed tasks wait for a retry"),
            ),
            (
                "a refused upload",
                Evidence {
                    uploads_refused: 1,
                    refused_paths: &refused,
                    ..Evidence::default()
                },
                Status::Degraded,
                Some(
                    "1 upload entry refused (outside the pipeline home, a NUL in the path, or an unsafe remote): /etc/passwd",
                ),
            ),
            (
                "an upload waiting",
                Evidence {
                    uploads_failed: 1,
                    ..Evidence::default()
                },
                Status::Degraded,
                Some("1 upload failed and waits for a retry"),
            ),
            (
                "an open breaker",
                Evidence {
                    breakers: &breaker,
                    ..Evidence::default()
                },
                Status::Degraded,
                Some(
                    "retries of step ingest paused until 2026-11-26T12:05:00Z (circuit breaker: exit 1)",
                ),
            ),
            (
                "a failed last run",
                Evidence {
                    failed_runs: vec![("upload", "2026-11-26T11:00:00Z", "exit 1")],
                    ..Evidence::default()
                },
                Status::Degraded,
                Some("the last upload run failed at 2026-11-26T11:00:00Z: exit 1"),
            ),
        ];
        for (case, evidence, status, first) in cases {
            let judged = judge(&evidence, Vec::new());
            assert_eq!(judged.status, status, "{case}");
            assert_eq!(judged.problems.first().map(String::as_str), first, "{case}");
        }
    }

    #[test]
    fn problems_read_alone_degrade_and_come_last() {
        let noticed = vec!["data_dir /x does not exist".to_owned()];
        let judged = judge(&Evidence::default(), noticed.clone());
        assert_eq!(judged.status, Status::Degraded);
        assert_eq!(judged.problems, noticed);

        let dead = ids(1);
        let evidence = Evidence {
            dead_tasks: &dead,
            failed_tasks: 1,
            ..Evidence::default()
        };
        let judged = judge(&evidence, noticed);
        assert_eq!(judged.status, Status::Failing);
        assert_eq!(
            judged.problems,
            [
                "1 dead task (out of attempts): t1",
                "1 failed task waits for a retry",
                "data_dir /x does not exist"
            ]
        );
    }

    #[test]
    fn long_lists_are_cut_after_fifty() {
        assert_eq!(list(&ids(3)), "t1, t2, t3");
        let long = list(&ids(LISTED + 7));
        assert!(long.ends_with(&format!("t{LISTED} and 7 more")), "{long}");
    }
}
