//! Running the due tasks in groups (issue 8): a group is marked `running` in one locked
//! write of task_queue.json, run `parallel` at a time, and its results recorded in one
//! more, so 10,000 quick tasks cost a few dozen writes of the queue instead of 20,000.
//!
//! What a kill can cost. Every task of a group is marked `running` (with `started_at`)
//! before the first of them starts, so no task is lost: after `stuck_after` each is taken
//! as crashed and runs again. What a kill loses is the results of the group in flight, so
//! those tasks run again; groups are sized to keep that near a budget of work: [`BUDGET`],
//! or twenty writes of the queue when a large queue makes a write cost more than 1/20 of
//! it (so the writes stay a small part of the run). A group grows fourfold while it
//! finishes within half the budget and halves when it takes longer, and no task of a
//! group starts once the group has used its budget: it is handed back as it was (its old
//! status and times), for the next group. A group holds at least `parallel` tasks, and
//! each worker's first task always starts, so a slow step runs `parallel` tasks per group
//! side by side (issue 21 item 7); a task waits in `running` without running for at most
//! about the budget or one task's run.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use serde_json::Value;

mod batch;

use super::breaker::{self, Tracker};
use super::plan::{Due, RetryPlan};
use super::step_lock::StepLocks;
use super::task_file::{self, FileVerdict};
use super::turn_fields::{Turn, closed_fields, field, refused_fields, result_fields};
use crate::config::rules::RetryConfig;
use crate::config::trust;
use crate::error::{Error, Result};
use crate::model::action::Action;
use crate::model::task_status::TaskStatus;
use crate::run::context::Context;
use crate::run::runner::{self, CommandReport, Invocation, Vars};
use crate::state::json_file::Edit;
use crate::state::task_queue::TaskQueue;
use crate::state::task_queue::{RUNNER, RUNNING_BY};
use crate::state::timestamp;

/// About how much work a group may hold: what a kill can make run again.
pub(super) const BUDGET: Duration = Duration::from_secs(1);
/// A group's budget is at least this many writes of the queue.
const WRITES_PER_BUDGET: u32 = 20;
/// The most tasks in one group, however quick they are.
const MAX_GROUP: usize = 4096;

/// One due task's turn, by id.
#[derive(Debug)]
pub(super) struct TaskTurn {
    pub(super) id: String,
    pub(super) turn: Turn,
}

/// What running the due tasks did.
#[derive(Debug, Default)]
pub(super) struct Executed {
    pub(super) turns: Vec<TaskTurn>,
    pub(super) commands: Vec<CommandReport>,
    /// How many groups ran (each two writes of the queue).
    pub(super) groups: usize,
    /// Tasks a group marked running but had no time for, handed back for a later group.
    pub(super) handed_back: usize,
    /// What stopped the whole action (the queue could not be read or written).
    pub(super) error: Option<Error>,
}

/// A task this run marked `running`, with what it needs to run and to be handed back.
#[derive(Debug)]
struct Taken<'p> {
    due: &'p Due,
    /// The task as it was, for the step's stdin.
    json: Value,
    own_command: Option<Vec<String>>,
    /// The fields the take changed, as they were (`None`: absent).
    before: Vec<(String, Option<Value>)>,
    started: SystemTime,
}

/// How a taken task's turn in its group went.
#[derive(Debug)]
enum Outcome {
    Ran {
        report: Option<CommandReport>,
        /// `None`: the step succeeded.
        error: Option<String>,
        /// The breaker's error class of a failure.
        class: Option<String>,
        finished: SystemTime,
    },
    /// Its step's breaker opened earlier in this run: handed back.
    Paused,
    /// The group's budget was spent, or a signal came, before it started: handed back
    /// and tried in a later group (if any).
    NotStarted,
    /// Its file leads outside data_dir, or its id reads as an option (why): not run, dead
    /// at once, since no later attempt could be allowed either.
    Refused(String),
    /// Its file is gone (why): closed as done without running.
    Closed(String),
    /// Another process holds its step's lock (why): handed back, not tried again in
    /// this run.
    Busy(String),
}

/// Runs the due tasks of `plan` in ranked order, group by group.
pub(super) fn execute(
    ctx: &Context<'_>,
    config: &RetryConfig,
    plan: &RetryPlan,
    tracker: &mut Tracker,
) -> Executed {
    let mut executed = Executed::default();
    let mut waiting: VecDeque<&Due> = plan.due.iter().collect();
    // A group holds at least one task per worker, or `parallel` would have nothing to
    // run side by side: with groups of one, a slow step ran one task at a time.
    let least = config.parallel.max(1);
    let mut size = least;
    let mut budget = BUDGET;
    // The queue as the last write left it, so the next write need not parse it again.
    let mut cache = None;
    while !waiting.is_empty() && !ctx.stopping() {
        let now = ctx.clock.now();
        let mut group = Vec::new();
        while group.len() < size {
            let Some(due) = waiting.pop_front() else {
                break;
            };
            if tracker.is_open(&due.step, now) {
                executed.turns.push(TaskTurn {
                    id: due.id.clone(),
                    turn: Turn::Paused,
                });
            } else {
                group.push(due);
            }
        }
        if group.is_empty() {
            continue;
        }
        batch::pull_ingest(ctx, &mut group, &mut waiting);
        executed.groups += 1;
        match run_group(
            ctx,
            config,
            &group,
            tracker,
            budget,
            &mut cache,
            &mut executed,
        ) {
            Ok(ran) => {
                executed.handed_back += ran.not_started.len();
                for due in ran.not_started.into_iter().rev() {
                    waiting.push_front(due);
                }
                size = next_size(size, ran.took, budget, least);
                budget = BUDGET.max(ran.write * WRITES_PER_BUDGET);
            }
            Err(e) => {
                executed.error = Some(e);
                break;
            }
        }
    }
    executed
}

/// The size of the next group after one of `size` tasks took `took`, never below `least`.
fn next_size(size: usize, took: Duration, budget: Duration, least: usize) -> usize {
    if took < budget / 2 {
        (size * 4).clamp(least, MAX_GROUP.max(least))
    } else if took > budget {
        (size / 2).max(least)
    } else {
        size
    }
}

/// What one group left for the next.
#[derive(Debug)]
struct GroupRan<'p> {
    /// Tasks handed back unstarted, in order.
    not_started: Vec<&'p Due>,
    /// How long the whole group took.
    took: Duration,
    /// How long its first write took.
    write: Duration,
}

/// Takes, runs and records one group.
fn run_group<'p>(
    ctx: &Context<'_>,
    config: &RetryConfig,
    group: &[&'p Due],
    tracker: &mut Tracker,
    budget: Duration,
    cache: &mut Option<TaskQueue>,
    executed: &mut Executed,
) -> Result<GroupRan<'p>> {
    let began = ctx.clock.now();
    let since = |from: SystemTime| ctx.clock.now().duration_since(from).unwrap_or_default();
    let (taken, gone) = take(ctx, group, cache)?;
    let write = since(began);
    executed.turns.extend(gone.into_iter().map(|due| TaskTurn {
        id: due.id.clone(),
        turn: Turn::Gone,
    }));
    // Ingest's own tasks go to its step together, before the rest run one by one.
    let (batched, taken) = batch::split_off(ctx, taken);
    let batch_outcomes = batch::run(ctx, config, &batched, tracker);
    let refused = own_commands_refused(ctx, &taken);
    let locks = StepLocks::take(ctx, taken.iter().map(|t| t.due.step.as_str()));
    let outcomes = run_taken(
        ctx,
        config,
        &taken,
        tracker,
        Window { began, budget },
        refused.as_deref(),
        &locks,
    );
    drop(locks);
    let taken: Vec<Taken<'_>> = batched.into_iter().chain(taken).collect();
    let mut outcomes: Vec<Outcome> = batch_outcomes.into_iter().chain(outcomes).collect();
    let mut not_started = Vec::new();
    for (t, outcome) in taken.iter().zip(&mut outcomes) {
        match outcome {
            Outcome::Ran { report, .. } => executed.commands.extend(report.take()),
            Outcome::NotStarted => not_started.push(t.due),
            Outcome::Paused | Outcome::Refused(_) | Outcome::Closed(_) | Outcome::Busy(_) => {}
        }
    }
    let turns = record(ctx, config, &taken, outcomes, cache)?;
    executed.turns.extend(turns);
    Ok(GroupRan {
        not_started,
        took: since(began),
        write,
    })
}

/// One locked write: every task of `group` that is still failed or pending becomes
/// `running`. The others (changed or removed by another writer since the plan) are gone.
fn take<'p>(
    ctx: &Context<'_>,
    group: &[&'p Due],
    cache: &mut Option<TaskQueue>,
) -> Result<(Vec<Taken<'p>>, Vec<&'p Due>)> {
    let started = ctx.clock.now();
    TaskQueue::update_cached(ctx.paths, cache, |queue| {
        let at = queue.positions();
        let mut taken = Vec::new();
        let mut gone = Vec::new();
        for &due in group {
            let Some(&pos) = at.get(&due.id) else {
                gone.push(due);
                continue;
            };
            let task = queue.at(pos).expect("positions point at tasks");
            if !matches!(
                task.status(),
                Some(TaskStatus::Failed | TaskStatus::Pending)
            ) {
                gone.push(due);
                continue;
            }
            let before = TAKE_FIELDS
                .iter()
                .map(|k| ((*k).to_owned(), task.0.get(*k).cloned()))
                .collect();
            let t = Taken {
                due,
                json: Value::Object(task.0.clone()),
                own_command: task.command(),
                before,
                started,
            };
            queue.set_at(
                pos,
                vec![
                    field("status", TaskStatus::Running.into()),
                    field("updated_at", timestamp(started).into()),
                    field("started_at", timestamp(started).into()),
                    field(RUNNING_BY, RUNNER.into()),
                ],
            );
            taken.push(t);
        }
        Edit::changed_if(!taken.is_empty(), (taken, gone))
    })
}

/// The fields a take sets; a task handed back unrun gets their old values back.
const TAKE_FIELDS: [&str; 4] = ["status", "updated_at", "started_at", RUNNING_BY];

/// Why the own commands of tasks cannot run, if they cannot: a task's `command` is code
/// written by whoever can write the queue, so it runs only when task_queue.json and the
/// state folder pass the same check as the rules (issue 10 item 3). Checked per group,
/// since modes can change while a watcher lives.
fn own_commands_refused(ctx: &Context<'_>, taken: &[Taken<'_>]) -> Option<String> {
    if taken.iter().all(|t| t.own_command.is_none()) {
        return None;
    }
    let checked = trust::check_file(&ctx.paths.task_queue)
        .and_then(|()| trust::check_folder(&ctx.paths.state_dir));
    checked.err().map(|e| match e.hint() {
        Some(fix) => format!("{e} (fix: {fix})"),
        None => e.to_string(),
    })
}

/// When a group began and how long it may start tasks for.
#[derive(Debug, Clone, Copy)]
struct Window {
    began: SystemTime,
    budget: Duration,
}

/// Runs the taken tasks in order, `parallel` at a time, none starting after the group's
/// budget is spent or a signal came (the first one per worker always starts, so
/// `parallel` slow steps run side by side); tasks of a step whose lock the group holds run
/// one at a time under it, and one that waited its turn past the budget is handed back.
fn run_taken(
    ctx: &Context<'_>,
    config: &RetryConfig,
    taken: &[Taken<'_>],
    tracker: &mut Tracker,
    Window { began, budget }: Window,
    refused: Option<&str>,
    locks: &StepLocks,
) -> Vec<Outcome> {
    let next = AtomicUsize::new(0);
    let any_started = AtomicBool::new(false);
    let outcomes: Vec<Mutex<Outcome>> = taken
        .iter()
        .map(|_| Mutex::new(Outcome::NotStarted))
        .collect();
    let tracker = Mutex::new(tracker);
    let workers = config.parallel.min(taken.len()).max(1);
    let spent = || {
        ctx.clock
            .now()
            .duration_since(began)
            .is_ok_and(|d| d > budget)
    };
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    // Each worker's first task always runs, so every group makes progress
                    // and `parallel` tasks start together.
                    if i >= taken.len() || ctx.stopping() || (i >= workers && spent()) {
                        break;
                    }
                    let t = &taken[i];
                    let lock = || tracker.lock().expect("no worker panics holding the lock");
                    if lock().is_open(&t.due.step, ctx.clock.now()) {
                        *outcomes[i].lock().expect("one writer per slot") = Outcome::Paused;
                        continue;
                    }
                    let turn = match locks.turn(&t.due.step) {
                        Ok(turn) => turn,
                        Err(why) => {
                            *outcomes[i].lock().expect("one writer per slot") = Outcome::Busy(why);
                            continue;
                        }
                    };
                    // Tasks of one step queue for its turn: one that waited past the
                    // budget behind a task of this group goes to the next group.
                    if turn.is_some() && any_started.load(Ordering::SeqCst) && spent() {
                        drop(turn);
                        continue;
                    }
                    any_started.store(true, Ordering::SeqCst);
                    let step_lock = turn.as_ref().map(|turn| turn.path.clone());
                    let outcome = run_one(ctx, config, t, refused, step_lock);
                    drop(turn);
                    if let Outcome::Ran { error, class, .. } = &outcome {
                        let failure = error.as_ref().and(class.as_deref());
                        lock().record(&t.due.step, failure, ctx.clock.now());
                    }
                    *outcomes[i].lock().expect("one writer per slot") = outcome;
                }
            });
        }
    });
    outcomes
        .into_iter()
        .map(|o| o.into_inner().expect("no worker panics holding the lock"))
        .collect()
}

/// Runs one taken task's step; a task with its own command fails, naming why, when
/// `refused` says such commands may not run.
fn run_one(
    ctx: &Context<'_>,
    config: &RetryConfig,
    t: &Taken<'_>,
    refused: Option<&str>,
    step_lock: Option<PathBuf>,
) -> Outcome {
    // Whoever can write the queue names the task: an id a command would read as an option
    // is refused as a remote is (issue 21 item 8).
    if t.due.id.starts_with('-') {
        return Outcome::Refused(format!(
            "its id {:?} starts with '-', which the retry command would take for an option ({{task_id}}); not run",
            t.due.id
        ));
    }
    match task_file::judge(&ctx.paths.data_dir, &t.json) {
        FileVerdict::Run => {}
        FileVerdict::Refuse(why) => return Outcome::Refused(why),
        FileVerdict::Gone(why) => return Outcome::Closed(why),
        FileVerdict::Unknown(why) => {
            return Outcome::Ran {
                report: None,
                error: Some(why),
                class: Some("data_dir unresolved".to_owned()),
                finished: ctx.clock.now(),
            };
        }
    }
    if let (Some(_), Some(why)) = (&t.own_command, refused) {
        return Outcome::Ran {
            report: None,
            error: Some(format!("its own command was not run: {why}")),
            class: Some("own command refused".to_owned()),
            finished: ctx.clock.now(),
        };
    }
    let mut invocation = invocation(ctx, config, &t.due.id, &t.json, t.own_command.clone());
    invocation.step_lock = step_lock;
    let (report, error, class) = match runner::run_judged(&invocation, ctx.judged) {
        Ok(report) if report.success() => (Some(report), None, None),
        Ok(report) => {
            let class = breaker::error_class(&report);
            let error = report.failure_text();
            (Some(report), Some(error), Some(class))
        }
        Err(e) => (None, Some(e.chain()), Some(format!("cannot start: {e}"))),
    };
    Outcome::Ran {
        report,
        error,
        class,
        finished: ctx.clock.now(),
    }
}

/// The command for one task: its own command when it has one, else the retry command with
/// `{task_id}`; the task as JSON on stdin.
fn invocation(
    ctx: &Context<'_>,
    config: &RetryConfig,
    id: &str,
    json: &Value,
    own_command: Option<Vec<String>>,
) -> Invocation {
    let mut stdin = serde_json::to_vec(json).expect("a task always serialises");
    stdin.push(b'\n');
    let scripts = ctx.judged.scripts(
        ctx.paths,
        ctx.rules,
        own_command.as_deref().unwrap_or(&config.command.argv),
    );
    let argv = match own_command {
        Some(argv) => argv.into_iter().map(OsString::from).collect(),
        None => runner::expand(
            &config.command.argv,
            &Vars {
                task_id: Some(id),
                ..Vars::default()
            },
        ),
    };
    let mut env = ctx.step_env(Action::Retry, None);
    env.push(("MEMSCHED_TASK_ID", OsString::from(id)));
    Invocation {
        argv,
        cwd: ctx.paths.home.clone(),
        env,
        stdin: Some(stdin),
        timeout: config.command.timeout,
        lock: Some(ctx.paths.action_lock(Action::Retry.name())),
        step_lock: None,
        scripts,
        // The spinner names the task by its MEMSCHED_TASK_ID.
        item: None,
    }
}

/// One locked write: the result of every task that ran, and every task handed back as it
/// was. A task another writer removed meanwhile is gone; one it changed is left alone
/// when handed back, and given its result when it ran.
fn record(
    ctx: &Context<'_>,
    config: &RetryConfig,
    taken: &[Taken<'_>],
    outcomes: Vec<Outcome>,
    cache: &mut Option<TaskQueue>,
) -> Result<Vec<TaskTurn>> {
    TaskQueue::update_cached(ctx.paths, cache, |queue| {
        let at = queue.positions();
        let mut turns = Vec::new();
        let mut changed = false;
        for (t, outcome) in taken.iter().zip(outcomes) {
            let id = t.due.id.clone();
            let Some(&pos) = at.get(&id) else {
                if matches!(outcome, Outcome::Ran { .. } | Outcome::Paused) {
                    turns.push(TaskTurn {
                        id,
                        turn: Turn::Gone,
                    });
                }
                continue;
            };
            let task = queue.at(pos).expect("positions point at tasks");
            let (fields, turn) = match outcome {
                Outcome::Ran {
                    error, finished, ..
                } => result_fields(config, task, &id, t.started, error, finished),
                Outcome::Refused(why) => refused_fields(why, t.started, ctx.clock.now()),
                Outcome::Closed(why) => closed_fields(why, t.started, ctx.clock.now()),
                Outcome::Paused | Outcome::NotStarted | Outcome::Busy(_) => {
                    // Handed back only if it still carries this run's mark.
                    let ours = task.status() == Some(TaskStatus::Running)
                        && task.0.get("started_at").and_then(Value::as_str)
                            == Some(timestamp(t.started).as_str());
                    let fields = if ours { t.before.clone() } else { Vec::new() };
                    let turn = match outcome {
                        Outcome::Paused => Some(Turn::Paused),
                        Outcome::Busy(why) => Some(Turn::Busy { why }),
                        _ => None,
                    };
                    (fields, turn)
                }
            };
            changed |= !fields.is_empty();
            queue.set_at(pos, fields);
            if let Some(turn) = turn {
                turns.push(TaskTurn { id, turn });
            }
        }
        Edit::changed_if(changed, turns)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_grow_while_quick_and_shrink_when_slow() {
        let b = BUDGET;
        assert_eq!(next_size(1, Duration::from_millis(10), b, 1), 4);
        assert_eq!(next_size(MAX_GROUP, Duration::ZERO, b, 1), MAX_GROUP);
        assert_eq!(next_size(8, b * 3 / 4, b, 1), 8);
        assert_eq!(next_size(8, b * 2, b, 1), 4);
        assert_eq!(next_size(1, b * 10, b, 1), 1);
        assert_eq!(
            next_size(8, b * 3 / 2, b * 4, 1),
            32,
            "a larger budget lets it grow"
        );
    }

    #[test]
    fn a_group_never_holds_fewer_tasks_than_run_side_by_side() {
        let b = BUDGET;
        assert_eq!(
            next_size(4, b * 10, b, 4),
            4,
            "slow tasks still fill the workers"
        );
        assert_eq!(next_size(4, Duration::ZERO, b, 4), 16);
        assert_eq!(next_size(64, b * 3 / 4, b, 64), 64);
    }
}
