//! Retry: run the failed tasks of task_queue.json that are due, in ranked order, and record
//! each result in the queue (done; or failed with backoff; or dead), changing only the
//! tasks this run touched.

mod breaker;
mod group;
mod plan;

pub use breaker::{OpenBreaker, open_from_log};
use plan::tasks;
pub use plan::{Due, Repair, RetryPlan, plan};

use std::time::{Instant, SystemTime};

use serde_json::{Map, Value};

use super::retry_policy;
use crate::config::rules::RetryConfig;
use crate::error::Result;
use crate::model::action::Action;
use crate::model::task_status::TaskStatus;
use crate::run::context::Context;
use crate::run::report::{ActionReport, FailedItem, Outcome};
use crate::state::task_queue::{RUNNING_BY, TaskQueue};
use crate::state::{scheduler_log, timestamp};
use breaker::Tracker;
use group::{Executed, TaskTurn, Turn};

/// The whole retry action: load, plan, repair, run, record, report.
#[must_use]
pub fn perform(ctx: &Context<'_>, config: &RetryConfig) -> ActionReport {
    let mut report = ActionReport::new(Action::Retry, Outcome::NothingToDo, "");
    let queue = match TaskQueue::load(&ctx.paths.task_queue) {
        Ok(q) => q,
        Err(e) => return report.fail(&e),
    };
    // A log that does not parse only costs the memory of open breakers; say so.
    let runs = scheduler_log::read(ctx.paths).unwrap_or_else(|e| {
        report
            .reasons
            .push(format!("open circuit breakers unknown: {}", e.chain()));
        Vec::new()
    });
    let open = open_from_log(&runs, ctx.now);
    let planning = Instant::now();
    let plan = plan(&queue, config, &open, ctx.now);
    let plan_ms = u64::try_from(planning.elapsed().as_micros()).unwrap_or(u64::MAX) / 1000;
    drop(queue);
    report.reasons.extend(plan.reasons());
    report.counts = plan_counts(&plan, plan_ms);
    report.set_found(plan.due.len());
    report.details.insert(
        "breakers".into(),
        Value::Array(open.iter().map(OpenBreaker::to_json).collect()),
    );
    let paused_until = open
        .iter()
        .filter(|_| !plan.paused.is_empty())
        .map(|b| b.until);
    if let Some(next) = plan.next_due.into_iter().chain(paused_until).min() {
        report.set_next_due(next);
    }

    let failed_total = plan
        .by_status
        .get(TaskStatus::Failed.name())
        .copied()
        .unwrap_or(0);
    if !plan.has_work() {
        report.summary = match (failed_total, plan.next_due) {
            (0, _) => "no failed tasks".to_owned(),
            (n, Some(next)) => format!(
                "{}, none due; the next at {}",
                tasks(n, "failed"),
                timestamp(next)
            ),
            (n, None) => format!("{}, none due", tasks(n, "failed")),
        };
        if !plan.paused.is_empty() {
            report.summary.push_str(&format!(
                "; {} paused by an open circuit breaker",
                plan.paused.len()
            ));
        }
        return report;
    }
    if ctx.dry_run {
        report.outcome = Outcome::WouldRun;
        report.summary = format!(
            "would run {} in ranked order{}",
            tasks(plan.due.len(), "due"),
            repairs(&plan)
        );
        return report;
    }
    if let Err(e) = repair(ctx, config, &plan) {
        return report.fail(&e);
    }
    let mut tracker = Tracker::new(config.breaker, open);
    let Executed {
        turns,
        commands,
        groups,
        handed_back,
        error,
    } = group::execute(ctx, config, &plan, &mut tracker);
    report.counts.insert("groups".into(), groups.into());
    report
        .counts
        .insert("handed_back".into(), handed_back.into());
    report.commands = commands;
    let now = ctx.clock.now();
    report.details.insert(
        "breakers".into(),
        Value::Array(
            tracker
                .open_at(now)
                .iter()
                .map(OpenBreaker::to_json)
                .collect(),
        ),
    );
    summarise(&mut report, &plan, &turns, &tracker, now);
    if let Some(next) = next_due(&plan, &turns, &tracker, now) {
        report.set_next_due(next);
    }
    if let Some(e) = error {
        return report.fail(&e);
    }
    report
}

/// When this action has work again: a task's backoff ends or a breaker closes. The
/// watcher sets its timer from this.
fn next_due(
    plan: &RetryPlan,
    turns: &[TaskTurn],
    tracker: &Tracker,
    now: SystemTime,
) -> Option<SystemTime> {
    let backoffs = turns.iter().filter_map(|t| match &t.turn {
        Turn::Failed { next, .. } => *next,
        Turn::Done | Turn::Paused | Turn::Gone => None,
    });
    let breakers = tracker.open_at(now).into_iter().map(|b| b.until);
    plan.next_due
        .into_iter()
        .chain(backoffs)
        .chain(breakers)
        .min()
}

fn plan_counts(plan: &RetryPlan, plan_ms: u64) -> Map<String, Value> {
    let mut counts = Map::new();
    for (status, n) in &plan.by_status {
        counts.insert(format!("status_{status}"), (*n).into());
    }
    counts.insert("due".into(), plan.due.len().into());
    counts.insert("waiting".into(), plan.waiting.into());
    counts.insert("paused".into(), plan.paused.len().into());
    counts.insert("stuck".into(), plan.stuck.len().into());
    counts.insert("exhausted".into(), plan.exhausted.len().into());
    counts.insert("restamped".into(), plan.restamp.len().into());
    counts.insert("plan_ms".into(), plan_ms.into());
    counts
}

fn summarise(
    report: &mut ActionReport,
    plan: &RetryPlan,
    turns: &[TaskTurn],
    tracker: &Tracker,
    now: SystemTime,
) {
    let count = |f: fn(&Turn) -> bool| turns.iter().filter(|t| f(&t.turn)).count();
    let done = count(|t| matches!(t, Turn::Done));
    let failed = count(|t| matches!(t, Turn::Failed { dead: false, .. }));
    let dead = count(|t| matches!(t, Turn::Failed { dead: true, .. }));
    let paused = count(|t| matches!(t, Turn::Paused)) + plan.paused.len();
    let gone = count(|t| matches!(t, Turn::Gone));
    for TaskTurn { id, turn } in turns {
        if let Turn::Failed { error, dead, .. } = turn {
            report.failed_items.push(FailedItem {
                item: id.clone(),
                error: if *dead {
                    format!("{error} (now dead)")
                } else {
                    error.clone()
                },
            });
        }
    }
    for (key, n) in [
        ("done", done),
        ("failed_again", failed),
        ("dead", dead),
        ("paused_now", paused),
        ("changed_meanwhile", gone),
    ] {
        report.counts.insert(key.into(), n.into());
    }
    let ran = done + failed + dead;
    // A step that failed on anything fails the action (exit 1), as it does for ingest and
    // upload; the tasks themselves are recorded for the next attempt either way.
    report.outcome = if failed + dead > 0 {
        Outcome::Failed
    } else if ran > 0 || !repairs(plan).is_empty() {
        Outcome::Ran
    } else {
        Outcome::NothingToDo
    };
    let mut summary = format!(
        "ran {}: {done} done, {failed} failed again, {dead} dead{}",
        tasks(ran, "due"),
        repairs(plan)
    );
    if paused > 0 {
        let steps: Vec<String> = tracker
            .open_at(now)
            .iter()
            .map(|b| format!("{} until {}", b.step, timestamp(b.until)))
            .collect();
        summary.push_str(&format!(
            "; {paused} paused: circuit breaker open for {}",
            steps.join(", ")
        ));
    }
    if gone > 0 {
        summary.push_str(&format!("; {gone} changed by another writer, left alone"));
    }
    report.summary = summary;
}

/// "; repaired 1 stuck task, 2 exhausted tasks, restamped 1 task" (only what there is),
/// or "".
fn repairs(plan: &RetryPlan) -> String {
    let repaired: Vec<String> = [
        (plan.stuck.len(), "stuck"),
        (plan.exhausted.len(), "exhausted"),
    ]
    .into_iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, kind)| tasks(n, kind))
    .collect();
    let mut parts = Vec::new();
    if !repaired.is_empty() {
        parts.push(format!("repaired {}", repaired.join(", ")));
    }
    if !plan.restamp.is_empty() {
        parts.push(format!(
            "restamped {} whose time told nothing",
            tasks(plan.restamp.len(), "running")
        ));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("; {}", parts.join("; "))
    }
}

/// Stuck tasks go back to failed (the crashed run counts as an attempt), exhausted ones
/// become dead, running tasks whose times tell nothing get this run's time (the old
/// value kept in `updated_at_was`); one locked write for all.
fn repair(ctx: &Context<'_>, config: &RetryConfig, plan: &RetryPlan) -> Result<()> {
    if plan.stuck.is_empty() && plan.exhausted.is_empty() && plan.restamp.is_empty() {
        return Ok(());
    }
    let now = ctx.clock.now();
    TaskQueue::update(ctx.paths, |queue| {
        for r in &plan.stuck {
            let attempts = r.attempts + 1;
            let mut fields = Map::new();
            fields.insert("attempts".into(), attempts.into());
            fields.insert("last_error".into(), format!("stuck: {}", r.why).into());
            fields.insert("updated_at".into(), timestamp(now).into());
            let after =
                retry_policy::after_failure(&config.backoff, attempts, r.max_attempts, &r.id, now);
            for (key, value) in group::after_failure_fields(after) {
                fields.extend(value.map(|v| (key, v)));
            }
            queue.upsert(&r.id, fields);
        }
        // A repaired task runs nowhere any more: it loses memsched's running mark.
        let at = queue.positions();
        for r in &plan.stuck {
            if let Some(pos) = at.get(&r.id) {
                queue.set_at(*pos, vec![(RUNNING_BY.to_owned(), None)]);
            }
        }
        for r in &plan.restamp {
            let mut fields = Map::new();
            if let Some(was) = queue.get(&r.id).and_then(|t| t.0.get("updated_at")) {
                fields.insert("updated_at_was".into(), was.clone());
            }
            fields.insert("updated_at".into(), timestamp(now).into());
            queue.upsert(&r.id, fields);
        }
        for r in &plan.exhausted {
            let mut fields = Map::new();
            fields.insert("status".into(), TaskStatus::Dead.into());
            fields.insert("updated_at".into(), timestamp(now).into());
            queue.upsert(&r.id, fields);
        }
        (true, ())
    })
}
