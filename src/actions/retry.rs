//! Retry: run the failed tasks of task_queue.json that are due, in ranked order, and record
//! each result in the queue (done; or failed with backoff; or dead), changing only the
//! tasks this run touched.

mod breaker;
mod group;
mod plan;
mod step_lock;
mod task_file;
mod turn_fields;

pub(crate) use breaker::{OpenBreaker, open_from_log};
use plan::tasks;
pub(crate) use plan::{RetryPlan, plan};

use std::collections::HashSet;
use std::time::{Instant, SystemTime};

use serde_json::{Map, Value};

use super::retry_policy;
use crate::config::rules::RetryConfig;
use crate::error::Result;
use crate::model::action::Action;
use crate::model::task_status::TaskStatus;
use crate::run::context::Context;
use crate::run::job::{self, Job, Ran};
use crate::run::report::{ActionReport, FailedItem, count};
use crate::state::json_file::Edit;
use crate::state::task_queue::{RUNNING_BY, TaskQueue};
use crate::state::{scheduler_log, timestamp};
use breaker::Tracker;
use group::{Executed, TaskTurn};
use turn_fields::Turn;

/// The whole retry action, through the job skeleton (see [`RetryJob`]).
#[must_use]
pub(crate) fn perform(ctx: &Context<'_>, config: &RetryConfig) -> ActionReport {
    job::perform(&RetryJob { config }, ctx)
}

/// The retry action with its rules.
pub(crate) struct RetryJob<'a> {
    pub config: &'a RetryConfig,
}

/// What retry reads before it plans.
pub(crate) struct Loaded {
    /// The queue, dropped once planned.
    queue: Option<TaskQueue>,
    /// The circuit breakers scheduler_log.json shows open.
    open: Vec<OpenBreaker>,
    /// How long planning took, for the counts.
    plan_ms: u64,
}

/// What an execution did, with the breakers as it left them.
pub(crate) struct Done {
    executed: Executed,
    tracker: Tracker,
}

impl Job for RetryJob<'_> {
    const ACTION: Action = Action::Retry;
    type State = Loaded;
    type Plan = RetryPlan;
    type Done = Done;

    fn load(&self, ctx: &Context<'_>, report: &mut ActionReport) -> Result<Loaded> {
        let queue = TaskQueue::load(&ctx.paths.task_queue)?;
        // A log that does not parse only costs the memory of open breakers; say so.
        let runs = scheduler_log::read(ctx.paths).unwrap_or_else(|e| {
            report
                .reasons
                .push(format!("open circuit breakers unknown: {}", e.chain()));
            Vec::new()
        });
        Ok(Loaded {
            queue: Some(queue),
            open: open_from_log(&runs, ctx.now, self.config.breaker.cooldown),
            plan_ms: 0,
        })
    }

    fn plan(&self, ctx: &Context<'_>, state: &mut Loaded) -> RetryPlan {
        let planning = Instant::now();
        let queue = state.queue.take().expect("a turn plans once");
        let plan = plan(&queue, self.config, &state.open, &ctx.plan_clock());
        state.plan_ms = u64::try_from(planning.elapsed().as_micros()).unwrap_or(u64::MAX) / 1000;
        plan
    }

    fn describe(
        &self,
        _: &Context<'_>,
        state: &Loaded,
        plan: &RetryPlan,
        report: &mut ActionReport,
    ) {
        report.reasons.extend(plan.reasons());
        report.counts = plan_counts(plan, state.plan_ms);
        report.set_found(plan.due.len());
        report.details.insert(
            "breakers".into(),
            Value::Array(state.open.iter().map(OpenBreaker::to_json).collect()),
        );
        let paused_until = state
            .open
            .iter()
            .filter(|_| !plan.paused.is_empty())
            .map(|b| b.until);
        if let Some(next) = plan.next_due.into_iter().chain(paused_until).min() {
            report.set_next_due(next);
        }
    }

    fn has_work(plan: &RetryPlan) -> bool {
        plan.has_work()
    }

    fn nothing_text(&self, plan: &RetryPlan) -> String {
        let failed_total = plan
            .by_status
            .get(TaskStatus::Failed.name())
            .copied()
            .unwrap_or(0);
        let mut summary = match (failed_total, plan.next_due) {
            (0, _) => "no failed tasks".to_owned(),
            (n, Some(next)) => format!(
                "{}, none due; the next at {}",
                tasks(n, "failed"),
                timestamp(next)
            ),
            (n, None) => format!("{}, none due", tasks(n, "failed")),
        };
        if !plan.paused.is_empty() {
            summary.push_str(&format!(
                "; {} paused by an open circuit breaker",
                plan.paused.len()
            ));
        }
        summary
    }

    fn would_text(&self, _: &Context<'_>, plan: &RetryPlan) -> String {
        format!(
            "would run {} in ranked order{}",
            tasks(plan.due.len(), "due"),
            repairs(plan, self.config)
        )
    }

    fn execute(
        &self,
        ctx: &Context<'_>,
        plan: &RetryPlan,
        state: &mut Loaded,
    ) -> Result<job::Executed<Done>> {
        repair(ctx, self.config, plan)?;
        let mut tracker = Tracker::new(self.config.breaker, std::mem::take(&mut state.open));
        let mut executed = group::execute(ctx, self.config, plan, &mut tracker);
        let stopped_by = executed.error.take();
        Ok(job::Executed {
            done: Done { executed, tracker },
            stopped_by,
        })
    }

    fn record(
        &self,
        ctx: &Context<'_>,
        plan: &RetryPlan,
        done: Done,
        report: &mut ActionReport,
    ) -> Ran {
        let Done {
            executed:
                Executed {
                    turns,
                    commands,
                    groups,
                    handed_back,
                    error: _,
                },
            tracker,
        } = done;
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
        let mut ran = summarise(report, plan, self.config, &turns, &tracker, now);
        // A due task with no turn never started: a signal stopped the run before it
        // (issue 18 item 15 for ingest and upload; issue 19 for retry).
        let left = plan.due.len().saturating_sub(turns.len());
        if ctx.stopping() && left > 0 {
            ran.interrupted = true;
            ran.summary.push_str(&format!(
                "; stopped by a signal: the other {} {} next run",
                tasks(left, "due"),
                if left == 1 { "runs" } else { "run" }
            ));
        }
        if let Some(next) = next_due(plan, &turns, &tracker, now) {
            report.set_next_due(next);
        }
        ran
    }
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
        Turn::Done | Turn::Paused | Turn::Gone | Turn::Closed { .. } | Turn::Busy { .. } => None,
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
    counts.insert(count::EXHAUSTED.into(), plan.exhausted.len().into());
    counts.insert("restamped".into(), plan.restamp.len().into());
    counts.insert("plan_ms".into(), plan_ms.into());
    counts
}

/// Writes the turns' failed items and counts into `report`, and says how the run ended.
fn summarise(
    report: &mut ActionReport,
    plan: &RetryPlan,
    config: &RetryConfig,
    turns: &[TaskTurn],
    tracker: &Tracker,
    now: SystemTime,
) -> Ran {
    let count = |f: fn(&Turn) -> bool| turns.iter().filter(|t| f(&t.turn)).count();
    let done = count(|t| matches!(t, Turn::Done));
    let failed = count(|t| matches!(t, Turn::Failed { dead: false, .. }));
    let dead = count(|t| matches!(t, Turn::Failed { dead: true, .. }));
    let paused = count(|t| matches!(t, Turn::Paused)) + plan.paused.len();
    let gone = count(|t| matches!(t, Turn::Gone));
    let closed = count(|t| matches!(t, Turn::Closed { .. }));
    let busy = count(|t| matches!(t, Turn::Busy { .. }));
    for TaskTurn { id, turn } in turns {
        if let Turn::Closed { why } = turn {
            report.reasons.push(format!("closed {id}: {why}"));
        }
        if let Turn::Busy { why } = turn {
            report.reasons.push(format!("wait {id}: {why}"));
        }
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
        (count::DONE, done),
        (count::FAILED_AGAIN, failed),
        (count::DEAD, dead),
        ("paused_now", paused),
        ("changed_meanwhile", gone),
        ("closed", closed),
        ("waiting_for_step_lock", busy),
    ] {
        report.counts.insert(key.into(), n.into());
    }
    let ran = done + failed + dead;
    let mut summary = format!(
        "ran {}: {done} done, {failed} failed again, {dead} dead{}",
        tasks(ran, "due"),
        repairs(plan, config)
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
    if busy > 0 {
        summary.push_str(&format!(
            "; {busy} left due: their step's lock is held by another run"
        ));
    }
    if closed > 0 {
        summary.push_str(&format!(
            "; {closed} closed as done: their file is gone from data_dir"
        ));
    }
    // A step that failed on anything fails the action (exit 1), as it does for ingest and
    // upload; the tasks themselves are recorded for the next attempt either way.
    Ran {
        failed: failed + dead,
        acted: ran + closed > 0 || !repairs(plan, config).is_empty(),
        summary,
        error: None,
        interrupted: false,
    }
}

/// "; repaired 1 stuck task, 2 exhausted tasks, restamped 1 task" (only what there is),
/// or "".
fn repairs(plan: &RetryPlan, config: &RetryConfig) -> String {
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
    if let (false, Some(keep)) = (plan.prune.is_empty(), config.done_keep) {
        parts.push(format!(
            "pruned {} older than done_keep ({})",
            tasks(plan.prune.len(), "done"),
            humantime::format_duration(keep)
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
    if plan.stuck.is_empty()
        && plan.exhausted.is_empty()
        && plan.restamp.is_empty()
        && plan.prune.is_empty()
    {
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
            for (key, value) in turn_fields::after_failure_fields(after) {
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
        // Only what is still done and old under the lock goes: a writer may have revived it.
        let cutoff = config.done_keep.and_then(|keep| now.checked_sub(keep));
        if let Some(cutoff) = cutoff.filter(|_| !plan.prune.is_empty()) {
            // A set, so a queue of many done tasks is pruned in one pass, not one per task.
            let prune: HashSet<&str> = plan.prune.iter().map(String::as_str).collect();
            queue.remove_where(|t| {
                t.done_before(cutoff) && t.id().is_some_and(|id| prune.contains(id))
            });
        }
        Edit::Changed(())
    })
}
