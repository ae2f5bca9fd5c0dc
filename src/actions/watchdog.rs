//! Watchdog: assess the pipeline's health (see [`health`]), write it to
//! watchdog_state.json, then run the user's own watchdog command, if any.

use std::ffi::OsString;

use super::Context;
use crate::action::Action;
pub mod health;

use crate::report::{ActionReport, Outcome};
use crate::rules::WatchdogConfig;
use crate::runner::{self, Invocation, Vars};
use crate::state::watchdog_state;

/// The whole watchdog action. `earlier` are this run's reports so far.
#[must_use]
pub fn perform(
    ctx: &Context<'_>,
    config: &WatchdogConfig,
    earlier: &[ActionReport],
) -> ActionReport {
    let mut report = ActionReport::new(Action::Watchdog, Outcome::Ran, "");
    let health = health::assess(ctx.paths, ctx.rules, earlier, ctx.now);
    report.reasons.clone_from(&health.problems);
    report
        .details
        .insert("status".into(), health.status.name().into());
    report.summary = match health.problems.first() {
        None => "status ok".to_owned(),
        Some(first) if health.problems.len() == 1 => {
            format!("status {}: {first}", health.status.name())
        }
        Some(first) => format!(
            "status {}: {first} (+{} more)",
            health.status.name(),
            health.problems.len() - 1
        ),
    };
    if ctx.dry_run {
        report.outcome = Outcome::WouldRun;
        report.summary = format!("would write watchdog_state.json: {}", report.summary);
        return report;
    }
    let value = serde_json::to_value(&health).expect("health always serialises");
    if let Err(e) = watchdog_state::write(&ctx.paths.watchdog_state, value) {
        return report.fail(&e);
    }
    let Some(command) = &config.command else {
        return report;
    };
    let mut env = ctx.step_env(Action::Watchdog, None);
    env.push(("MEMSCHED_HEALTH", OsString::from(health.status.name())));
    let invocation = Invocation {
        argv: runner::expand(&command.argv, &Vars::default()),
        cwd: ctx.paths.home.clone(),
        env,
        stdin: None,
        timeout: command.timeout,
        lock: Some(ctx.paths.action_lock(Action::Watchdog.name())),
    };
    match runner::run(&invocation) {
        Ok(r) => {
            if !r.success() {
                report.outcome = Outcome::Failed;
                report.error = Some(format!("the watchdog command failed: {}", r.failure_text()));
                report.summary = format!(
                    "{}; the watchdog command failed: {}",
                    report.summary,
                    r.failure_text()
                );
            }
            report.commands.push(r);
            report
        }
        Err(e) => report.fail(&e),
    }
}
