//! The retry plan: which failed tasks are due, in what order, and which tasks need their
//! status repaired (stuck `running`, attempts used up). Pure: a queue, rules and a clock in.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::time::SystemTime;

use super::breaker::OpenBreaker;
use crate::config::rules::RetryConfig;
use crate::model::clock::Clock;
use crate::model::task_status::TaskStatus;
use crate::state::task_queue::{Priority, TaskQueue, TaskView};
use crate::state::timestamp;

/// Places listed in the plan's reasons before the rest are counted.
const LISTED: usize = 100;

/// A failed task that is due, with what ranked it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Due {
    pub id: String,
    pub step: String,
    pub priority: Priority,
    pub weight: i64,
    pub created_at: Option<SystemTime>,
    pub attempts: u64,
    pub max_attempts: u64,
}

/// A task whose status the plan repairs before anything runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Repair {
    pub id: String,
    pub attempts: u64,
    pub max_attempts: u64,
    pub why: String,
}

#[derive(Debug, Default)]
pub(crate) struct RetryPlan {
    /// Due tasks in run order.
    pub due: Vec<Due>,
    /// Tasks left `running` past `stuck_after`: back to failed (or dead).
    pub stuck: Vec<Repair>,
    /// Tasks `running` whose times tell nothing (missing, not a time, far in the
    /// future): `updated_at` set to now, so they are stuck `stuck_after` later if their
    /// runner has not finished them by then (issue 9 item 9).
    pub restamp: Vec<Repair>,
    /// Failed tasks whose attempts are used up: dead.
    pub exhausted: Vec<Repair>,
    /// Failed tasks not yet due, and when the first falls due.
    pub waiting: usize,
    pub next_due: Option<SystemTime>,
    /// Due tasks of a step whose circuit breaker is open: (id, step).
    pub paused: Vec<(String, String)>,
    /// Tasks by status, as read.
    pub by_status: BTreeMap<String, usize>,
    /// Tasks no one can act on safely (see `TaskQueue::malformed`): reported, not run.
    pub malformed: Vec<String>,
    /// Done tasks older than `done_keep`: removed from the queue.
    pub prune: Vec<String>,
}

impl RetryPlan {
    #[must_use]
    pub(crate) fn has_work(&self) -> bool {
        !self.due.is_empty()
            || !self.stuck.is_empty()
            || !self.exhausted.is_empty()
            || !self.restamp.is_empty()
            || !self.prune.is_empty()
    }

    /// The ranked plan, a line per place, then the repairs and pauses.
    #[must_use]
    pub(crate) fn reasons(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.due.is_empty() {
            out.push("order: priority (critical, high, normal, low), then step weight (higher first), then oldest first".to_owned());
        }
        for (place, d) in self.due.iter().take(LISTED).enumerate() {
            out.push(format!(
                "{}. {}: priority {}, step {} (weight {}), created {}, attempt {} of {}",
                place + 1,
                d.id,
                d.priority.name(),
                d.step,
                d.weight,
                d.created_at
                    .map_or_else(|| "at an unknown time".to_owned(), timestamp),
                d.attempts + 1,
                d.max_attempts
            ));
        }
        if self.due.len() > LISTED {
            out.push(format!("… and {} more due tasks", self.due.len() - LISTED));
        }
        for r in self
            .stuck
            .iter()
            .chain(&self.exhausted)
            .chain(&self.restamp)
            .take(LISTED)
        {
            out.push(format!("repair {}: {}", r.id, r.why));
        }
        for (id, step) in self.paused.iter().take(LISTED) {
            out.push(format!(
                "pause {id}: the circuit breaker of step {step} is open"
            ));
        }
        for m in self.malformed.iter().take(LISTED) {
            out.push(format!("malformed: {m}"));
        }
        if let Some(next) = self.next_due {
            let wait = if self.waiting == 1 {
                "waits for its backoff"
            } else {
                "wait for their backoff"
            };
            out.push(format!(
                "{} {wait}; the next is due at {}",
                tasks(self.waiting, ""),
                timestamp(next)
            ));
        }
        out
    }
}

/// "1 task", "2 due tasks": a count of tasks whose noun agrees with it (issue 11);
/// `kind` is an adjective or "".
#[must_use]
pub(super) fn tasks(n: usize, kind: &str) -> String {
    let noun = if n == 1 { "task" } else { "tasks" };
    if kind.is_empty() {
        format!("{n} {noun}")
    } else {
        format!("{n} {kind} {noun}")
    }
}

/// Builds the retry plan against the one instant `clock` tells.
#[must_use]
pub(crate) fn plan(
    queue: &TaskQueue,
    config: &RetryConfig,
    open: &[OpenBreaker],
    clock: &dyn Clock,
) -> RetryPlan {
    let now = clock.now();
    let mut plan = RetryPlan {
        malformed: queue.malformed(),
        ..RetryPlan::default()
    };
    let duplicates = queue.duplicate_ids();
    for task in queue.tasks() {
        let status = task.status();
        let shown = status.as_ref().map_or("(none)", TaskStatus::name);
        *plan.by_status.entry(shown.to_owned()).or_default() += 1;
        let Some(id) = task.id().filter(|id| !duplicates.contains(id)) else {
            continue;
        };
        let max_attempts = task
            .max_attempts()
            .unwrap_or(u64::from(config.max_attempts));
        match status {
            Some(TaskStatus::Running) => {
                let since = task.last_seen(now, config.stuck_after);
                let orphaned = task.is_running_by_memsched();
                if orphaned {
                    // The plan runs under retry.lock, which every step memsched starts
                    // holds too: a task memsched set running is running nowhere now.
                    plan.stuck.push(Repair {
                        id: id.to_owned(),
                        attempts: task.attempts(),
                        max_attempts,
                        why: "set running by a memsched that was killed (no process holds retry.lock): taken as crashed".to_owned(),
                    });
                } else if let Some(why) = task.time_unknown(now, config.stuck_after) {
                    plan.restamp.push(Repair {
                        id: id.to_owned(),
                        attempts: task.attempts(),
                        max_attempts,
                        why: format!(
                            "running, but it {why}: restamped with this run's time, so it is taken as crashed if still running {} from now",
                            humantime::format_duration(config.stuck_after)
                        ),
                    });
                } else if task.is_stuck(now, config.stuck_after) {
                    plan.stuck.push(Repair {
                        id: id.to_owned(),
                        attempts: task.attempts(),
                        max_attempts,
                        why: format!(
                            "running since {} (longer than stuck_after {}): taken as crashed",
                            since.map_or_else(String::new, timestamp),
                            humantime::format_duration(config.stuck_after)
                        ),
                    });
                }
            }
            // `pending` is a task no one has tried yet: due like a failed one.
            Some(TaskStatus::Failed | TaskStatus::Pending) if task.attempts() >= max_attempts => {
                plan.exhausted.push(Repair {
                    id: id.to_owned(),
                    attempts: task.attempts(),
                    max_attempts,
                    why: format!(
                        "failed {} of {max_attempts} attempts: dead",
                        task.attempts()
                    ),
                });
            }
            Some(TaskStatus::Failed | TaskStatus::Pending) => {
                match task.next_attempt_at().filter(|at| *at > now) {
                    Some(at) => {
                        plan.waiting += 1;
                        plan.next_due = Some(plan.next_due.map_or(at, |n| n.min(at)));
                    }
                    None => {
                        let step = task.step().unwrap_or("").to_owned();
                        if open.iter().any(|b| b.step == step && b.until > now) {
                            plan.paused.push((id.to_owned(), step));
                        } else {
                            plan.due.push(due(task, id, step, config, max_attempts));
                        }
                    }
                }
            }
            Some(TaskStatus::Done) => {
                let cutoff = config.done_keep.and_then(|keep| now.checked_sub(keep));
                if cutoff.is_some_and(|cutoff| task.done_before(cutoff)) {
                    plan.prune.push(id.to_owned());
                }
            }
            _ => {}
        }
    }
    plan.due.sort_by(|a, b| {
        let key = |d: &Due| {
            (
                d.priority,
                Reverse(d.weight),
                d.created_at.is_none(),
                d.created_at,
            )
        };
        key(a).cmp(&key(b)).then_with(|| a.id.cmp(&b.id))
    });
    plan
}

fn due(task: TaskView<'_>, id: &str, step: String, config: &RetryConfig, max_attempts: u64) -> Due {
    Due {
        id: id.to_owned(),
        weight: config.weights.get(&step).copied().unwrap_or(0),
        step,
        priority: task.priority(),
        created_at: task.created_at().or_else(|| task.updated_at()),
        attempts: task.attempts(),
        max_attempts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::rules::Rules;
    use crate::model::clock::Frozen;
    use std::path::Path;
    use std::time::Duration;

    fn config() -> RetryConfig {
        let text = "[actions.retry]\ncommand = [\"r\", \"{task_id}\"]\nweights = { ingest = 10, upload = 5 }\nmax_attempts = 3\nstuck_after = \"10m\"\n";
        Rules::parse(Path::new("r.toml"), text)
            .unwrap()
            .retry
            .unwrap()
    }

    fn queue(tasks: &serde_json::Value) -> TaskQueue {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.json");
        std::fs::write(&path, tasks.to_string()).unwrap();
        TaskQueue::load(&path).unwrap()
    }

    const NOW: &str = "2026-11-26T12:00:00Z";

    fn now() -> SystemTime {
        crate::state::parse_time(NOW).unwrap()
    }

    #[test]
    fn due_tasks_rank_by_priority_then_weight_then_age() {
        let q = queue(&serde_json::json!([
            {"id": "low-old", "step": "ingest", "status": "failed", "priority": "low", "created_at": "2026-01-01T00:00:00Z"},
            {"id": "normal-upload", "step": "upload", "status": "failed", "created_at": "2026-11-01T00:00:00Z"},
            {"id": "normal-ingest-new", "step": "ingest", "status": "failed", "created_at": "2026-11-20T00:00:00Z"},
            {"id": "normal-ingest-old", "step": "ingest", "status": "failed", "created_at": "2026-11-10T00:00:00Z"},
            {"id": "critical-other", "step": "other", "status": "failed", "priority": "critical"},
            {"id": "done", "step": "ingest", "status": "done"},
        ]));
        let p = plan(&q, &config(), &[], &Frozen(now()));
        let order: Vec<&str> = p.due.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(
            order,
            [
                "critical-other",
                "normal-ingest-old",
                "normal-ingest-new",
                "normal-upload",
                "low-old"
            ]
        );
        assert_eq!(p.by_status["failed"], 5);
    }

    #[test]
    fn backoff_exhaustion_stuck_and_breakers_are_sorted_out() {
        let q = queue(&serde_json::json!([
            {"id": "later", "step": "ingest", "status": "failed", "attempts": 1, "next_attempt_at": "2026-11-26T12:05:00Z"},
            {"id": "spent", "step": "ingest", "status": "failed", "attempts": 3},
            {"id": "own-limit", "step": "ingest", "status": "failed", "attempts": 3, "max_attempts": 9},
            {"id": "hung", "step": "ingest", "status": "running", "updated_at": "2026-11-26T11:00:00Z"},
            {"id": "busy", "step": "ingest", "status": "running", "updated_at": "2026-11-26T11:55:00Z"},
            {"id": "ahead", "step": "ingest", "status": "running", "updated_at": "2026-11-26T12:09:00Z"},
            {"id": "garbled", "step": "ingest", "status": "running", "updated_at": "yesterday"},
            {"id": "started", "step": "ingest", "status": "running", "started_at": "2026-11-26T10:00:00Z"},
            {"id": "far-ahead", "step": "ingest", "status": "running", "updated_at": "2999-01-01T00:00:00Z"},
            {"id": "timeless", "step": "ingest", "status": "running"},
            {"id": "paused", "step": "upload", "status": "failed"},
        ]));
        let open = [OpenBreaker {
            step: "upload".into(),
            class: "exit 1".into(),
            until: now() + Duration::from_secs(60),
        }];
        let p = plan(&q, &config(), &open, &Frozen(now()));
        assert_eq!(
            p.due.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
            ["own-limit"]
        );
        assert_eq!(
            p.exhausted
                .iter()
                .map(|r| r.id.as_str())
                .collect::<Vec<_>>(),
            ["spent"]
        );
        assert_eq!(
            p.stuck.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["hung", "started"],
            "a clock a few minutes ahead is believed; started_at stands in for updated_at"
        );
        assert_eq!(
            p.restamp.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["garbled", "far-ahead", "timeless"]
        );
        assert!(
            p.restamp[0].why.contains("not a time: \"yesterday\""),
            "{}",
            p.restamp[0].why
        );
        assert!(
            p.restamp[1].why.contains("in the future"),
            "{}",
            p.restamp[1].why
        );
        assert_eq!(p.paused, [("paused".to_owned(), "upload".to_owned())]);
        assert_eq!(p.waiting, 1);
        assert_eq!(p.next_due, crate::state::parse_time("2026-11-26T12:05:00Z"));
    }

    /// A failed task as a ranking case gives it: (id, step, priority, day it was created).
    type Failed<'a> = (&'a str, &'a str, &'a str, Option<u32>);

    #[test]
    fn the_ranking_is_priority_then_weight_then_age_then_id() {
        use serde_json::json;
        let at = |day: u32| format!("2026-11-{day:02}T00:00:00Z");
        // (case, tasks as (id, step, priority, created day), run order)
        let cases: &[(&str, &[Failed<'_>], &[&str])] = &[
            (
                "priority beats weight",
                &[
                    ("u", "upload", "high", Some(1)),
                    ("i", "ingest", "normal", Some(1)),
                ],
                &["u", "i"],
            ),
            (
                "weight beats age",
                &[
                    ("old-u", "upload", "normal", Some(1)),
                    ("new-i", "ingest", "normal", Some(20)),
                ],
                &["new-i", "old-u"],
            ),
            (
                "older first",
                &[
                    ("b", "ingest", "normal", Some(9)),
                    ("a", "ingest", "normal", Some(3)),
                ],
                &["a", "b"],
            ),
            (
                "an unknown age goes last",
                &[
                    ("x", "ingest", "normal", None),
                    ("y", "ingest", "normal", Some(25)),
                ],
                &["y", "x"],
            ),
            (
                "an unknown step weighs nothing",
                &[
                    ("s", "other", "normal", Some(1)),
                    ("u", "upload", "normal", Some(9)),
                ],
                &["u", "s"],
            ),
            (
                "a tie goes by id",
                &[
                    ("z", "ingest", "low", Some(5)),
                    ("m", "ingest", "low", Some(5)),
                ],
                &["m", "z"],
            ),
            (
                "critical first of all",
                &[
                    ("l", "ingest", "low", Some(1)),
                    ("c", "other", "critical", None),
                    ("n", "ingest", "normal", Some(1)),
                ],
                &["c", "n", "l"],
            ),
        ];
        for (case, tasks, order) in cases {
            let tasks: Vec<serde_json::Value> = tasks
                .iter()
                .map(|(id, step, priority, day)| {
                    let mut t =
                        json!({"id": id, "step": step, "status": "failed", "priority": priority});
                    if let Some(day) = day {
                        t["created_at"] = at(*day).into();
                    }
                    t
                })
                .collect();
            let p = plan(&queue(&json!(tasks)), &config(), &[], &Frozen(now()));
            let got: Vec<&str> = p.due.iter().map(|d| d.id.as_str()).collect();
            assert_eq!(got, *order, "{case}");
        }
    }

    #[test]
    fn a_task_falls_due_when_the_clock_reaches_its_next_attempt() {
        let q = queue(&serde_json::json!([
            {"id": "soon", "step": "ingest", "status": "failed", "attempts": 1, "next_attempt_at": "2026-11-26T12:05:00Z"},
            {"id": "fresh", "step": "ingest", "status": "pending"},
        ]));
        // (minutes after NOW, due tasks in order, tasks still waiting)
        let cases: [(u64, &[&str], usize); 3] = [
            (0, &["fresh"], 1),
            (4, &["fresh"], 1),
            (5, &["fresh", "soon"], 0),
        ];
        for (minutes, due, waiting) in cases {
            let clock = Frozen(now() + Duration::from_secs(minutes * 60));
            let p = plan(&q, &config(), &[], &clock);
            let got: Vec<&str> = p.due.iter().map(|d| d.id.as_str()).collect();
            assert_eq!((got.as_slice(), p.waiting), (due, waiting), "{minutes} min");
        }
    }
}
