//! One pass over the requested actions, in the seed's order: for each, take its lock, plan
//! from disk, execute, and report; then append the run to scheduler_log.json.

use std::time::{Instant, SystemTime};

use crate::actions::{Action, Context, ingest};
use crate::error::{Error, Result, holder_text};
use crate::lock;
use crate::paths::Paths;
use crate::report::{ActionReport, Outcome, RunRecord, exit_of};
use crate::rules::Rules;
use crate::state::{scheduler_log, timestamp};

/// What a run was asked to do.
#[derive(Debug, Clone)]
pub struct Request {
    pub actions: Vec<Action>,
    /// Why the run happens: manual, cron, event, tick, startup.
    pub trigger: String,
    pub dry_run: bool,
    pub progress: bool,
}

/// Runs every requested action once. One action failing does not stop the others.
#[must_use]
pub fn run(paths: &Paths, rules: &Rules, request: &Request) -> RunRecord {
    let started_at = SystemTime::now();
    let clock = Instant::now();
    let ctx = Context {
        paths,
        rules,
        now: started_at,
        dry_run: request.dry_run,
        progress: request.progress,
    };
    let mut actions = Vec::new();
    for action in Action::ALL.into_iter().filter(|a| request.actions.contains(a)) {
        let began = Instant::now();
        let mut report = run_action(&ctx, action);
        report.duration_ms = millis(began);
        log::info!("{action}: {}: {}", report.outcome.label(), report.summary);
        actions.push(report);
    }
    RunRecord {
        started_at: timestamp(started_at),
        finished_at: timestamp(SystemTime::now()),
        duration_ms: millis(clock),
        trigger: request.trigger.clone(),
        modes: request.actions.iter().map(|a| a.name().to_owned()).collect(),
        dry_run: request.dry_run,
        pid: std::process::id(),
        exit_code: exit_of(&actions).code(),
        actions,
    }
}

/// Appends the run to scheduler_log.json (never for a dry run, which writes nothing).
pub fn record(paths: &Paths, rules: &Rules, run: &RunRecord) -> Result<()> {
    if run.dry_run {
        return Ok(());
    }
    let value = serde_json::to_value(run).expect("a run record always serialises");
    scheduler_log::append(paths, value, rules.log_keep)
}

fn run_action(ctx: &Context<'_>, action: Action) -> ActionReport {
    if !ctx.rules.is_configured(action) {
        let source = ctx
            .rules
            .file
            .as_ref()
            .map_or_else(|| "the rules".to_owned(), |f| f.display().to_string());
        return ActionReport::new(
            action,
            Outcome::Skipped,
            format!("not configured: no [actions.{action}] table in {source}"),
        );
    }
    let available = match action {
        Action::Ingest => true,
        Action::Retry | Action::Upload | Action::Watchdog => false,
    };
    if !available {
        return ActionReport::new(
            action,
            Outcome::Skipped,
            "not available yet in this version of memsched",
        );
    }
    // A dry run takes no lock: it writes nothing, not even a lock file.
    let _guard = if ctx.dry_run {
        None
    } else {
        match take_lock(ctx.paths, action) {
            Ok(guard) => Some(guard),
            Err(Error::LockHeld { path, pid }) => {
                let mut report = ActionReport::new(
                    action,
                    Outcome::Skipped,
                    format!(
                        "{} holds {}: that run does this work",
                        holder_text(pid),
                        path.display()
                    ),
                );
                report.lock_held = true;
                report.lock_holder = pid;
                return report;
            }
            Err(e) => return ActionReport::new(action, Outcome::Failed, "").fail(&e),
        }
    };
    match action {
        Action::Ingest => match &ctx.rules.ingest {
            Some(config) => ingest::perform(ctx, config),
            None => unreachable!("checked by is_configured above"),
        },
        Action::Retry | Action::Upload | Action::Watchdog => {
            unreachable!("unavailable actions returned above")
        }
    }
}

fn take_lock(paths: &Paths, action: Action) -> Result<lock::Guard> {
    std::fs::create_dir_all(&paths.state_dir).map_err(|source| Error::StateWrite {
        path: paths.state_dir.clone(),
        source,
    })?;
    lock::try_acquire(&paths.action_lock(action.name()))
}

fn millis(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}
