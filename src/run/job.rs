//! [`Job`]: the one skeleton every action runs through: load, plan, tell the plan, then
//! the nothing-to-do line, the dry run's line, or execute and judge the outcome from the
//! failures. Each action supplies its load, its pure plan and its execution; the rules of
//! what a report says when are written here once.

use crate::error::{Error, Result};
use crate::model::action::Action;
use crate::model::words;
use crate::run::context::Context;
use crate::run::report::{ActionReport, Outcome};

/// What an execution did, and the error that stopped it, if one did: what was done before
/// the error is still reported.
pub(crate) struct Executed<D> {
    pub done: D,
    pub stopped_by: Option<Error>,
}

impl<D> Executed<D> {
    /// An execution that went to its end.
    pub(crate) fn whole(done: D) -> Executed<D> {
        Executed {
            done,
            stopped_by: None,
        }
    }
}

/// How an execution ended, as the action tells it: the skeleton turns it into the
/// report's outcome, summary and error.
pub(crate) struct Ran {
    /// Items (files, tasks, the command) the step failed on: any makes the action fail.
    pub failed: usize,
    /// Whether the execution did anything at all: one that did not (every due task paused,
    /// say) reports nothing to do.
    pub acted: bool,
    /// The report's line.
    pub summary: String,
    /// The report's error when something failed (`None` leaves it empty).
    pub error: Option<String>,
    /// Whether a signal stopped it before the end of its plan: the outcome says
    /// interrupted (unless something failed), as the summary must (issue 18 item 15).
    pub interrupted: bool,
}

/// One action's part in the skeleton. Static dispatch: [`perform`] is generic over it.
pub(crate) trait Job {
    /// The action this job runs.
    const ACTION: Action;
    /// What `load` read (state files, a scan), kept for the plan and the execution.
    type State;
    /// The plan: a value, built by a pure function of the state.
    type Plan;
    /// What an execution did.
    type Done;

    /// Reads what the plan needs. A failure fails the action; notes worth showing (a log
    /// that does not parse, say) go into `report`'s reasons.
    fn load(&self, ctx: &Context<'_>, report: &mut ActionReport) -> Result<Self::State>;

    /// Plans from the state.
    fn plan(&self, ctx: &Context<'_>, state: &mut Self::State) -> Self::Plan;

    /// Tells the plan in the report before anything runs: its reasons, counts, the items
    /// found, when the action has work again.
    fn describe(
        &self,
        ctx: &Context<'_>,
        state: &Self::State,
        plan: &Self::Plan,
        report: &mut ActionReport,
    );

    /// Whether the plan has anything to execute.
    fn has_work(plan: &Self::Plan) -> bool;

    /// The line of a plan with nothing to do.
    fn nothing_text(&self, plan: &Self::Plan) -> String;

    /// The line of a dry run: what a run would do.
    fn would_text(&self, ctx: &Context<'_>, plan: &Self::Plan) -> String;

    /// Carries the plan out. An error before anything was done fails the action at once.
    fn execute(
        &self,
        ctx: &Context<'_>,
        plan: &Self::Plan,
        state: &mut Self::State,
    ) -> Result<Executed<Self::Done>>;

    /// Moves what the execution did into the report (counts, commands, failed items) and
    /// says how it ended.
    fn record(
        &self,
        ctx: &Context<'_>,
        plan: &Self::Plan,
        done: Self::Done,
        report: &mut ActionReport,
    ) -> Ran;

    /// What in the plan waits for a person, if anything (removals held back as too many
    /// at once): the run then fails with this line, whatever else it did. Not in a dry run.
    fn needs_a_person(&self, _plan: &Self::Plan) -> Option<String> {
        None
    }

    /// The last word once the report is written, whatever the plan was (ingest folds its
    /// journal here). Not called when an execution was stopped by an error.
    fn finish(
        &self,
        _ctx: &Context<'_>,
        _state: Self::State,
        _plan: &Self::Plan,
        report: ActionReport,
    ) -> ActionReport {
        report
    }

    /// What an execution stopped by an error leaves behind (ingest forgets the manifest it
    /// holds, which may be ahead of disk).
    fn abandon(&self, _state: Self::State) {}
}

/// Runs `job`: load, plan, describe; then nothing to do, a dry run's line, or execute and
/// record.
#[must_use]
pub(crate) fn perform<J: Job>(job: &J, ctx: &Context<'_>) -> ActionReport {
    let mut report = ActionReport::new(J::ACTION, Outcome::NothingToDo, "");
    let mut state = match job.load(ctx, &mut report) {
        Ok(state) => state,
        Err(e) => return report.fail(&e),
    };
    let plan = job.plan(ctx, &mut state);
    job.describe(ctx, &state, &plan, &mut report);
    if !J::has_work(&plan) {
        report.summary = job.nothing_text(&plan);
        return finish(job, ctx, state, &plan, report);
    }
    if ctx.dry_run {
        report.outcome = Outcome::WouldRun;
        report.summary = job.would_text(ctx, &plan);
        return finish(job, ctx, state, &plan, report);
    }
    let Executed { done, stopped_by } = match job.execute(ctx, &plan, &mut state) {
        Ok(executed) => executed,
        Err(e) => return report.fail(&e),
    };
    let ran = job.record(ctx, &plan, done, &mut report);
    report.outcome = if ran.failed > 0 {
        Outcome::Failed
    } else if ran.interrupted {
        Outcome::Interrupted
    } else if ran.acted {
        Outcome::Ran
    } else {
        Outcome::NothingToDo
    };
    report.summary = ran.summary;
    if ran.failed > 0 {
        report.error = ran.error;
    }
    if let Some(e) = stopped_by {
        job.abandon(state);
        return report.fail(&e);
    }
    finish(job, ctx, state, &plan, report)
}

/// What every run's end does: a plan that needs a person fails the run saying so (see
/// [`Job::needs_a_person`]), then the job has its last word.
fn finish<J: Job>(
    job: &J,
    ctx: &Context<'_>,
    state: J::State,
    plan: &J::Plan,
    mut report: ActionReport,
) -> ActionReport {
    if let Some(line) = job.needs_a_person(plan).filter(|_| !ctx.dry_run) {
        report.outcome = Outcome::Failed;
        report.summary = if report.summary.is_empty() {
            line.clone()
        } else {
            format!("{}; {line}", report.summary)
        };
        report.error = Some(line);
    }
    job.finish(ctx, state, plan, report)
}

/// "the upload step failed on 2 files": the error of a step that failed on some files.
#[must_use]
pub(crate) fn step_failed_on(action: Action, files: usize) -> String {
    format!(
        "the {action} step failed on {}",
        words::count(files, "file", "files")
    )
}
