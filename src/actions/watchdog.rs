//! Watchdog: assess the pipeline's health (see [`health`]), write it to
//! watchdog_state.json, then run the user's own watchdog command, if any.

use std::ffi::OsString;

pub(crate) mod health;
mod judge;
pub(crate) mod notify;

use crate::config::rules::WatchdogConfig;
use crate::error::Result;
use crate::model::action::Action;
use crate::run::context::Context;
use crate::run::job::{self, Job, Ran};
use crate::run::report::ActionReport;
use crate::run::runner::{self, CommandReport, Invocation, Vars};
use crate::state::{json_file, watchdog_state};
use health::Health;

/// The whole watchdog action, through the job skeleton (see [`WatchdogJob`]). `earlier`
/// are this run's reports so far.
#[must_use]
pub(crate) fn perform(
    ctx: &Context<'_>,
    config: &WatchdogConfig,
    earlier: &[ActionReport],
) -> ActionReport {
    job::perform(&WatchdogJob { config, earlier }, ctx)
}

/// The watchdog action with its rules and this run's reports so far.
pub(crate) struct WatchdogJob<'a> {
    pub config: &'a WatchdogConfig,
    pub earlier: &'a [ActionReport],
}

/// What an execution did besides writing the health.
pub(crate) struct Done {
    /// Whether a notification went out, or why not.
    notes: Vec<String>,
    /// The user's watchdog command, when one ran.
    command: Option<CommandReport>,
}

impl Job for WatchdogJob<'_> {
    const ACTION: Action = Action::Watchdog;
    /// The health is read and judged in one go by [`health::assess`].
    type State = ();
    type Plan = Health;
    type Done = Done;

    fn load(&self, _: &Context<'_>, _: &mut ActionReport) -> Result<()> {
        Ok(())
    }

    fn plan(&self, ctx: &Context<'_>, (): &mut ()) -> Health {
        health::assess(ctx.paths, ctx.rules, self.earlier, ctx.now)
    }

    fn describe(&self, _: &Context<'_>, (): &(), health: &Health, report: &mut ActionReport) {
        report.reasons.clone_from(&health.problems);
        report
            .details
            .insert("status".into(), health.status.name().into());
    }

    /// The health is always written.
    fn has_work(_: &Health) -> bool {
        true
    }

    fn nothing_text(&self, health: &Health) -> String {
        status_text(health)
    }

    fn would_text(&self, _: &Context<'_>, health: &Health) -> String {
        format!("would write watchdog_state.json: {}", status_text(health))
    }

    fn execute(
        &self,
        ctx: &Context<'_>,
        health: &Health,
        (): &mut (),
    ) -> Result<job::Executed<Done>> {
        let before = json_file::read(&ctx.paths.watchdog_state)
            .ok()
            .flatten()
            .map_or_else(notify::Before::default, |v| {
                notify::Before::from_state(Some(&v))
            });
        let value = serde_json::to_value(health).expect("health always serialises");
        watchdog_state::write(&ctx.paths.watchdog_state, value)?;
        let mut done = Done {
            notes: Vec::new(),
            command: None,
        };
        if self.config.notify {
            done.notes.extend(tell(ctx, &before, health));
        }
        let Some(command) = &self.config.command else {
            return Ok(job::Executed::whole(done));
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
            step_lock: None,
            scripts: runner::program::scripts(ctx.paths, ctx.rules, &command.argv),
            item: None,
        };
        Ok(match runner::run(&invocation) {
            Ok(r) => {
                done.command = Some(r);
                job::Executed::whole(done)
            }
            Err(e) => job::Executed {
                done,
                stopped_by: Some(e),
            },
        })
    }

    fn record(
        &self,
        _: &Context<'_>,
        health: &Health,
        done: Done,
        report: &mut ActionReport,
    ) -> Ran {
        report.reasons.extend(done.notes);
        let mut ran = Ran {
            failed: 0,
            acted: true,
            summary: status_text(health),
            error: None,
            interrupted: false,
        };
        if let Some(r) = done.command {
            if !r.success() {
                ran.failed = 1;
                ran.error = Some(format!("the watchdog command failed: {}", r.failure_text()));
                ran.summary = format!(
                    "{}; the watchdog command failed: {}",
                    ran.summary,
                    r.failure_text()
                );
            }
            report.commands.push(r);
        }
        ran
    }
}

/// "status ok", "status degraded: one problem", "status failing: the first (+2 more)".
fn status_text(health: &Health) -> String {
    match health.problems.first() {
        None => "status ok".to_owned(),
        Some(first) if health.problems.len() == 1 => {
            format!("status {}: {first}", health.status.name())
        }
        Some(first) => format!(
            "status {}: {first} (+{} more)",
            health.status.name(),
            health.problems.len() - 1
        ),
    }
}

/// Sends a desktop notification when health got worse or a task died (see [`notify`]),
/// and remembers when, for the rate limit. A notification that cannot be shown is a note
/// in the report's reasons, never a failure of the watchdog.
fn tell(ctx: &Context<'_>, before: &notify::Before, health: &Health) -> Option<String> {
    let now = ctx.clock.now();
    let notice = notify::decide(before, health, now, notify::gap())?;
    Some(match notify::send(&notice, &ctx.paths.home) {
        Ok(()) => {
            if let Err(e) =
                watchdog_state::write(&ctx.paths.watchdog_state, notify::record(&notice, now))
            {
                log::warn!("cannot record the notification: {}", e.chain());
            }
            format!("notified: {}", notice.summary)
        }
        Err(why) => format!("not notified ({}): {why}", notice.summary),
    })
}
