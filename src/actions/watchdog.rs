//! Watchdog: assess the pipeline's health (see [`health`]), write it to
//! watchdog_state.json, then run the user's own watchdog command, if any.

use std::ffi::OsString;

use crate::model::action::Action;
use crate::run::context::Context;
pub mod health;
pub mod notify;

use crate::config::rules::WatchdogConfig;
use crate::run::report::{ActionReport, Outcome};
use crate::run::runner::{self, Invocation, Vars};
use crate::state::{json_file, watchdog_state};

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
    let before = json_file::read(&ctx.paths.watchdog_state)
        .ok()
        .flatten()
        .map_or_else(notify::Before::default, |v| {
            notify::Before::from_state(Some(&v))
        });
    let value = serde_json::to_value(&health).expect("health always serialises");
    if let Err(e) = watchdog_state::write(&ctx.paths.watchdog_state, value) {
        return report.fail(&e);
    }
    if config.notify {
        tell(ctx, &before, &health, &mut report);
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

/// Sends a desktop notification when health got worse or a task died (see [`notify`]),
/// and remembers when, for the rate limit. A notification that cannot be shown is noted in
/// the report's reasons, never a failure of the watchdog.
fn tell(
    ctx: &Context<'_>,
    before: &notify::Before,
    health: &health::Health,
    report: &mut ActionReport,
) {
    let now = ctx.clock.now();
    let Some(notice) = notify::decide(before, health, now, notify::gap()) else {
        return;
    };
    match notify::send(&notice, &ctx.paths.home) {
        Ok(()) => {
            report.reasons.push(format!("notified: {}", notice.summary));
            if let Err(e) =
                watchdog_state::write(&ctx.paths.watchdog_state, notify::record(&notice, now))
            {
                log::warn!("cannot record the notification: {}", e.chain());
            }
        }
        Err(why) => report
            .reasons
            .push(format!("not notified ({}): {why}", notice.summary)),
    }
}
