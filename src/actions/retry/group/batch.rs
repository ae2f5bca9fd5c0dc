//! Failed ingest files retried together (issue 19): the `ingest` tasks ingest wrote that
//! fall due together go to the ingest step in one run (as `[actions.ingest]` passes files,
//! `batch_size` at a time; or one resident batch), not one step run per task, and each
//! file's result is its own task's. 40 timed-out files were 40 step starts, 40 index
//! rewrites and 68 s. The run holds retry.lock like every retried step, and ingest.lock
//! (a resident step's lease when ingest is resident, so the step already loaded serves it).

use std::collections::VecDeque;

use serde_json::Value;

use super::{Outcome, Taken};
use crate::actions::ingest;
use crate::actions::retry::breaker::{self, Tracker};
use crate::actions::retry::plan::Due;
use crate::actions::retry::step_lock::{StepLocks, busy_text};
use crate::actions::retry::task_file::{self, FileVerdict};
use crate::config::rules::RetryConfig;
use crate::model::action::Action;
use crate::os::lock;
use crate::run::context::Context;
use crate::run::resident;

/// The step whose tasks go together.
const INGEST: &str = "ingest";

/// A group that holds an `ingest` task takes the other waiting ones too, up to one
/// `batch_size`, so the files due together go to the step together.
pub(super) fn pull_ingest<'p>(
    ctx: &Context<'_>,
    group: &mut Vec<&'p Due>,
    waiting: &mut VecDeque<&'p Due>,
) {
    let Some(config) = ctx.rules.ingest.as_ref() else {
        return;
    };
    let held = group.iter().filter(|d| d.step == INGEST).count();
    if held == 0 {
        return;
    }
    let mut room = config.batch_size.saturating_sub(held);
    waiting.retain(|due| {
        if room == 0 || due.step != INGEST {
            return true;
        }
        room -= 1;
        group.push(due);
        false
    });
}

/// Splits `taken` into the tasks sent to the ingest step together (ingest's own tasks,
/// see [`ingest::batchable`]) and the rest, each in its order.
pub(super) fn split_off<'p>(
    ctx: &Context<'_>,
    taken: Vec<Taken<'p>>,
) -> (Vec<Taken<'p>>, Vec<Taken<'p>>) {
    let Some(config) = ctx.rules.ingest.as_ref() else {
        return (Vec::new(), taken);
    };
    taken.into_iter().partition(|t| {
        let file = t.json.get("file").and_then(Value::as_str);
        t.due.step == INGEST
            && t.json.get("step").and_then(Value::as_str) == Some(INGEST)
            && file.is_some_and(|file| {
                ingest::batchable(ctx, config, &t.due.id, file, t.own_command.as_deref())
            })
    })
}

/// Runs `batched` (from [`split_off`]): a task whose file may not run is judged alone, as
/// any task is; the files of the others go to the ingest step together. One outcome per
/// task, in order; the breaker counts each run of the step once.
pub(super) fn run(
    ctx: &Context<'_>,
    config: &RetryConfig,
    batched: &[Taken<'_>],
    tracker: &mut Tracker,
) -> Vec<Outcome> {
    let mut outcomes: Vec<Outcome> = batched.iter().map(|_| Outcome::NotStarted).collect();
    let Some(ingest) = ctx.rules.ingest.as_ref().filter(|_| !batched.is_empty()) else {
        return outcomes;
    };
    if ctx.stopping() {
        return outcomes;
    }
    let mut keys = Vec::new();
    let mut at = Vec::new();
    for (i, t) in batched.iter().enumerate() {
        match task_file::judge(&ctx.paths.data_dir, &t.json) {
            FileVerdict::Run => {
                let file = t.json.get("file").and_then(Value::as_str);
                keys.push(file.unwrap_or_default().to_owned());
                at.push(i);
            }
            FileVerdict::Refuse(why) => outcomes[i] = Outcome::Refused(why),
            FileVerdict::Gone(why) => outcomes[i] = Outcome::Closed(why),
            FileVerdict::Unknown(why) => {
                let class = "data_dir unresolved";
                tracker.record(INGEST, Some(class), ctx.clock.now());
                outcomes[i] = Outcome::Ran {
                    report: None,
                    error: Some(why),
                    class: Some(class.to_owned()),
                    finished: ctx.clock.now(),
                };
            }
        }
    }
    if keys.is_empty() {
        return outcomes;
    }
    if tracker.is_open(INGEST, ctx.clock.now()) {
        for &i in &at {
            outcomes[i] = Outcome::Paused;
        }
        return outcomes;
    }
    let runs = match send(ctx, config, ingest, &keys) {
        Ok(runs) => runs,
        Err(why) => {
            for &i in &at {
                outcomes[i] = Outcome::Busy(why.clone());
            }
            return outcomes;
        }
    };
    for run in runs {
        let finished = ctx.clock.now();
        let failed = run.results.iter().find_map(|(_, e)| e.as_deref());
        // Files never sent (a name no batch can hold) are no run of the step.
        if run.sent {
            let class = match (&run.report, failed) {
                (_, None) => None,
                (Some(report), Some(_)) => Some(breaker::error_class(report)),
                (None, Some(error)) => Some(format!("cannot start: {error}")),
            };
            tracker.record(INGEST, class.as_deref(), finished);
        }
        let mut report = run.report;
        for (k, error) in run.results {
            outcomes[at[k]] = Outcome::Ran {
                report: report.take(),
                error,
                class: None,
                finished,
            };
        }
    }
    outcomes
}

/// Sends the files `keys` to the ingest step under its lock: a lease on the one its
/// resident step holds, else ingest.lock handed to the one-shot step; `Err` says who
/// holds it (the tasks then wait for a later run).
fn send(
    ctx: &Context<'_>,
    config: &RetryConfig,
    ingest: &crate::config::rules::IngestConfig,
    keys: &[String],
) -> Result<Vec<ingest::RetriedRun>, String> {
    let retry_lock = ctx.paths.action_lock(Action::Retry.name());
    let timeout = config.command.timeout;
    if ingest.resident.is_some() {
        let path = ctx.paths.action_lock(Action::Ingest.name());
        let keep = ingest::resident_argvs(ingest);
        let lease = resident::lease(&path, &keep, || lock::try_acquire(&path))
            .map_err(|e| busy_text(Action::Ingest, &path, &e))?;
        let runs = ingest::retry_files(ctx, ingest, keys, retry_lock, None, timeout);
        drop(lease);
        return Ok(runs);
    }
    let locks = StepLocks::take(ctx, std::iter::once(INGEST));
    let turn = locks.turn(INGEST)?;
    let step_lock = turn.as_ref().map(|t| t.path.clone());
    Ok(ingest::retry_files(
        ctx, ingest, keys, retry_lock, step_lock, timeout,
    ))
}
