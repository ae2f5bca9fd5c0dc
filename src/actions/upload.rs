//! Upload: push the files upload_log.json lists as pending, failed or skipped (when the file
//! exists, is under max attempts and is due), after queueing new or changed files that
//! match the `sources` globs. One command per file; the result recorded per entry.

mod disk;
mod entry;
mod plan;
mod remote;
mod removal;
mod remove;
mod set;

pub(crate) use disk::RealDisk;
pub(crate) use entry::DueUpload;
pub(crate) use plan::{UploadPlan, plan};

use std::time::SystemTime;

use serde_json::{Map, Value};

use super::retry_policy::{self, AfterFailure};
use crate::config::rules::{CommandSpec, UploadConfig};
use crate::error::Result;
use crate::model::action::Action;
use crate::model::upload_status::UploadStatus;
use crate::model::words;
use crate::run::context::Context;
use crate::run::job::{self, Job, Ran};
use crate::run::report::{ActionReport, FailedItem, count};
use crate::run::runner::{self, CommandReport, Invocation, Vars};
use crate::state::json_file::Edit;
use crate::state::stat::Stat;
use crate::state::timestamp;
use crate::state::upload_log::{UploadLog, UploadView};
use entry::{resolve, shown};

/// The whole upload action, through the job skeleton (see [`UploadJob`]).
#[must_use]
pub(crate) fn perform(
    ctx: &Context<'_>,
    config: &UploadConfig,
    confirm_removals: bool,
) -> ActionReport {
    job::perform(
        &UploadJob {
            config,
            confirm_removals,
        },
        ctx,
    )
}

/// The upload action with its rules.
pub(crate) struct UploadJob<'a> {
    pub config: &'a UploadConfig,
    /// A person confirmed the removals this run finds (`--confirm-removals`): none is
    /// held back by `max_remove`.
    pub confirm_removals: bool,
}

/// What upload reads before it plans, and what the plan leaves for the end of the run.
pub(crate) struct Loaded {
    /// The log, dropped once planned.
    log: Option<UploadLog>,
}

/// What uploading the due entries did.
#[derive(Default)]
pub(crate) struct Done {
    uploaded: usize,
    /// Files deleted from the remote because their source is gone.
    removed: usize,
    failed: Vec<FailedItem>,
    commands: Vec<CommandReport>,
    /// Notes worth showing (stopped early by a signal).
    notes: Vec<String>,
    /// When the next upload is due, once every due one was tried.
    next_due: Option<SystemTime>,
    /// Whether a signal stopped it before its plan's end (issue 18 item 15).
    stopped: bool,
    /// Files of the `set` left pending because an earlier one of the set did not go up.
    held_back: usize,
}

impl Job for UploadJob<'_> {
    const ACTION: Action = Action::Upload;
    type State = Loaded;
    type Plan = UploadPlan;
    type Done = Done;

    fn load(&self, ctx: &Context<'_>, _: &mut ActionReport) -> Result<Loaded> {
        Ok(Loaded {
            log: Some(UploadLog::load(&ctx.paths.upload_log)?),
        })
    }

    fn plan(&self, ctx: &Context<'_>, state: &mut Loaded) -> UploadPlan {
        let log = state.log.take().expect("a turn plans once");
        let home = &ctx.paths.home;
        let disk = RealDisk::new(home, self.config);
        plan(
            home,
            &disk,
            self.config,
            &log,
            &ctx.plan_clock(),
            self.confirm_removals,
        )
    }

    fn describe(&self, _: &Context<'_>, _: &Loaded, plan: &UploadPlan, report: &mut ActionReport) {
        report.reasons = plan.reasons();
        report.set_found(plan.due.len());
        for (k, v) in [
            ("queued", plan.enqueue.len()),
            ("due", plan.due.len()),
            ("missing", plan.missing.len() + plan.still_missing),
            ("given_up", plan.given_up.len()),
            ("refused", plan.refused.len()),
            ("waiting", plan.waiting),
            ("coalesced", plan.interval_waits()),
            ("uploaded_before", plan.uploaded),
            ("duplicates", plan.malformed.len()),
            ("to_remove", plan.remove.len()),
            (
                "removals_held",
                plan.removals_held.as_ref().map_or(0, |(n, _)| *n),
            ),
        ] {
            report.counts.insert(k.into(), v.into());
        }
        if let Some(next) = plan.next_due {
            report.set_next_due(next);
        }
    }

    fn has_work(plan: &UploadPlan) -> bool {
        plan.has_work()
    }

    fn nothing_text(&self, plan: &UploadPlan) -> String {
        let mut text = format!("{} uploaded, none outstanding and due", plan.uploaded);
        if plan.interval_waits() > 0 {
            text += &format!(
                "; {} for min_interval",
                words::count(plan.interval_waits(), "file waits", "files wait")
            );
        }
        if !plan.given_up.is_empty() {
            text += &format!("; {} given up", plan.given_up.len());
        }
        text + &duplicates_text(plan)
    }

    fn would_text(&self, _: &Context<'_>, plan: &UploadPlan) -> String {
        format!(
            "would upload {} ({} newly queued), remove {} from the remote, mark {} missing as skipped, refuse {}",
            words::count(plan.due.len(), "file", "files"),
            plan.enqueue.len(),
            plan.remove.len(),
            plan.missing.len(),
            plan.refused.len()
        )
    }

    fn execute(
        &self,
        ctx: &Context<'_>,
        plan: &UploadPlan,
        _: &mut Loaded,
    ) -> Result<job::Executed<Done>> {
        queue_and_skip(ctx, plan)?;
        let mut executed = upload_due(ctx, self.config, plan);
        if executed.stopped_by.is_none() {
            executed.stopped_by =
                remove::remove_gone(ctx, self.config, plan, &mut executed.done).err();
        }
        Ok(executed)
    }

    fn record(
        &self,
        _: &Context<'_>,
        plan: &UploadPlan,
        done: Done,
        report: &mut ActionReport,
    ) -> Ran {
        report.reasons.extend(done.notes);
        report.commands.extend(done.commands);
        report.failed_items.extend(done.failed);
        if let Some(next) = done.next_due {
            report.set_next_due(next);
        }
        let (uploaded, failed) = (done.uploaded, report.failed_items.len());
        report
            .counts
            .insert(count::UPLOADED.into(), uploaded.into());
        report.counts.insert(count::FAILED.into(), failed.into());
        if !self.config.set.is_empty() {
            report
                .counts
                .insert("held_back".into(), done.held_back.into());
        }
        let mut summary = format!(
            "uploaded {uploaded} of {}",
            words::count(plan.due.len(), "file", "files")
        );
        if failed > 0 {
            summary.push_str(&format!(", {failed} failed (retried after backoff)"));
        }
        if done.held_back > 0 {
            summary.push_str(&format!(", {} of the set held back", done.held_back));
        }
        if plan.interval_waits() > 0 {
            summary.push_str(&format!(
                "; {} for min_interval (the latest version goes up when it ends)",
                words::count(plan.interval_waits(), "file waits", "files wait")
            ));
        }
        if !plan.remove.is_empty() {
            report.counts.insert("removed".into(), done.removed.into());
            summary.push_str(&format!(
                "; removed {} of {} from the remote",
                done.removed,
                words::count(plan.remove.len(), "gone file", "gone files")
            ));
        }
        if !plan.missing.is_empty() {
            summary.push_str(&format!(
                "; {} marked skipped",
                words::count(plan.missing.len(), "missing file", "missing files")
            ));
        }
        if !plan.refused.is_empty() {
            summary.push_str(&format!(
                "; {} refused (see their error in upload_log.json)",
                words::count(plan.refused.len(), "entry", "entries")
            ));
        }
        summary.push_str(&duplicates_text(plan));
        if done.stopped {
            summary.push_str("; stopped by a signal: the rest is sent next run");
        }
        Ran {
            failed,
            acted: true,
            summary,
            error: Some(job::step_failed_on(Action::Upload, failed)),
            interrupted: done.stopped,
        }
    }

    /// Held-back removals need a person: the run fails, saying what to do.
    fn needs_a_person(&self, plan: &UploadPlan) -> Option<String> {
        let (held, why) = plan.removals_held.as_ref()?;
        Some(remove::held_text(*held, why))
    }
}

/// The summary's note on paths several entries name, which wait for a person.
fn duplicates_text(plan: &UploadPlan) -> String {
    if plan.malformed.is_empty() {
        return String::new();
    }
    format!(
        "; {} named by several entries left alone (keep one of each in upload_log.json)",
        words::count(plan.malformed.len(), "path", "paths")
    )
}

/// Runs `command` (the upload or the remove command) for one entry, its placeholders
/// filled from it, under upload.lock: the command's report when it started, and the error
/// when it did not succeed.
fn run_for(
    ctx: &Context<'_>,
    command: &CommandSpec,
    item: &DueUpload,
) -> (Option<CommandReport>, Option<String>) {
    let vars = Vars {
        path: Some(&item.path),
        relpath: Some(&item.relpath),
        remote: Some(&item.remote),
        ..Vars::default()
    };
    let invocation = Invocation {
        argv: runner::expand(&command.argv, &vars),
        cwd: ctx.paths.home.clone(),
        env: ctx.step_env(Action::Upload, None),
        stdin: None,
        timeout: command.timeout,
        lock: Some(ctx.paths.action_lock(Action::Upload.name())),
        step_lock: None,
        scripts: runner::program::scripts(ctx.paths, ctx.rules, &command.argv),
        item: Some(item.relpath.display().to_string()),
    };
    match runner::run(&invocation) {
        Ok(r) if r.success() => (Some(r), None),
        Ok(r) => {
            let e = r.failure_text();
            (Some(r), Some(e))
        }
        Err(e) => (None, Some(e.chain())),
    }
}

/// Uploads the due entries in order, until done or a signal asks to stop. An upload whose
/// result cannot be recorded stops the rest.
fn upload_due(ctx: &Context<'_>, config: &UploadConfig, plan: &UploadPlan) -> job::Executed<Done> {
    let mut done = Done::default();
    let mut next_due = plan.next_due;
    let mut blocked_from = plan.set_blocked_from;
    for item in &plan.due {
        let rank = set::rank(config, &item.entry);
        if set::held_back(rank, blocked_from) {
            done.held_back += 1;
            continue;
        }
        if ctx.stopping() {
            done.notes.push(
                "stopped early: a signal asked memsched to stop; the rest waits for the next run"
                    .to_owned(),
            );
            done.stopped = true;
            break;
        }
        let tried = match upload_one(ctx, config, item) {
            Ok(tried) => tried,
            Err(e) => {
                return job::Executed {
                    done,
                    stopped_by: Some(e),
                };
            }
        };
        next_due = next_due.into_iter().chain(tried.next).min();
        done.commands.extend(tried.command);
        match tried.error {
            None => done.uploaded += 1,
            Some(error) => {
                blocked_from = blocked_from.into_iter().chain(rank).min();
                done.failed.push(FailedItem {
                    item: item.entry.clone(),
                    error,
                });
            }
        }
    }
    if done.held_back > 0 {
        done.notes.push(format!(
            "held back {}: an earlier file of the set did not go up, and the set goes up whole, in order",
            words::count(done.held_back, "file of the set", "files of the set")
        ));
    }
    done.next_due = next_due;
    job::Executed::whole(done)
}

/// One upload tried: its command (none when it could not start), its error, and when the
/// entry is due again after a failure.
struct Tried {
    command: Option<CommandReport>,
    error: Option<String>,
    next: Option<SystemTime>,
}

/// Queues new and changed source files, and marks entries whose file is gone as skipped.
fn queue_and_skip(ctx: &Context<'_>, plan: &UploadPlan) -> Result<()> {
    if plan.enqueue.is_empty() && plan.missing.is_empty() && plan.refused.is_empty() {
        return Ok(());
    }
    let now = timestamp(ctx.clock.now());
    UploadLog::update(&ctx.paths.upload_log, |log| {
        for (entry, why) in &plan.enqueue {
            let mut fields = Map::new();
            fields.insert("status".into(), UploadStatus::Pending.into());
            fields.insert("attempts".into(), 0.into());
            fields.insert("queued_because".into(), (*why).into());
            fields.insert("updated_at".into(), now.as_str().into());
            log.upsert(entry, fields);
        }
        for entry in &plan.missing {
            let mut fields = Map::new();
            fields.insert("status".into(), UploadStatus::Skipped.into());
            fields.insert(
                "error".into(),
                format!(
                    "file missing: {}",
                    resolve(&ctx.paths.home, entry)
                        .map_or_else(|| shown(entry), |p| p.display().to_string())
                )
                .into(),
            );
            fields.insert("updated_at".into(), now.as_str().into());
            log.upsert(entry, fields);
        }
        for (entry, why) in &plan.refused {
            let mut fields = Map::new();
            fields.insert("status".into(), UploadStatus::Refused.into());
            fields.insert("error".into(), format!("refused: {why}").into());
            fields.insert("updated_at".into(), now.as_str().into());
            log.upsert(entry, fields);
        }
        Edit::Changed(())
    })
}

/// Whether the file the plan checked is still there as checked, just before its upload
/// starts: a folder on its path swapped for a link since would send another file (issue
/// 21 item 2). The step gets that path, with no link left in it to swap.
fn still_where_checked(item: &DueUpload) -> std::result::Result<(), String> {
    match std::fs::canonicalize(&item.path) {
        Ok(now) if now == item.path && std::fs::metadata(&now).is_ok_and(|m| m.is_file()) => Ok(()),
        Ok(now) => Err(format!(
            "not uploaded: {} changed since memsched checked it (it now resolves to {}); tried again next run",
            item.path.display(),
            now.display()
        )),
        Err(e) => Err(format!(
            "not uploaded: {} changed since memsched checked it ({e}); tried again next run",
            item.path.display()
        )),
    }
}

/// Runs the upload command for one entry and records the result.
fn upload_one(ctx: &Context<'_>, config: &UploadConfig, item: &DueUpload) -> Result<Tried> {
    let stat = std::fs::symlink_metadata(&item.abs)
        .ok()
        .map(|m| Stat::of(&m));
    let (command, error) = match still_where_checked(item) {
        Ok(()) => run_for(ctx, &config.command, item),
        Err(why) => (None, Some(why)),
    };
    let finished = ctx.clock.now();
    let mut next = None;
    UploadLog::update(&ctx.paths.upload_log, |log| {
        let attempts = log.get(&item.entry).map_or(0, UploadView::attempts) + 1;
        let mut fields = Map::new();
        fields.insert("remote".into(), item.remote.as_str().into());
        fields.insert("attempts".into(), attempts.into());
        fields.insert("updated_at".into(), timestamp(finished).into());
        match &error {
            None => {
                fields.insert("status".into(), UploadStatus::Uploaded.into());
                fields.insert("uploaded_at".into(), timestamp(finished).into());
                fields.insert("error".into(), Value::Null);
                fields.insert("next_attempt_at".into(), Value::Null);
                if let Some(stat) = stat {
                    fields.insert("size".into(), stat.size.into());
                    // A string: as a number it exceeds what jq and JavaScript hold exactly.
                    fields.insert("mtime_ns".into(), stat.mtime_ns.to_string().into());
                }
            }
            Some(error) => {
                fields.insert("status".into(), UploadStatus::Failed.into());
                fields.insert("error".into(), error.as_str().into());
                // Out of attempts, it stays `failed` with no next attempt: the plan
                // counts it as given up.
                let max = u64::from(config.max_attempts);
                match retry_policy::after_failure(
                    &config.backoff,
                    attempts,
                    max,
                    &item.entry,
                    finished,
                ) {
                    AfterFailure::RetryAt(at) => {
                        fields.insert("next_attempt_at".into(), timestamp(at).into());
                        next = Some(at);
                    }
                    AfterFailure::OutOfAttempts => {
                        fields.insert("next_attempt_at".into(), Value::Null);
                    }
                }
            }
        }
        log.upsert(&item.entry, fields);
        Edit::Changed(())
    })?;
    Ok(Tried {
        command,
        error,
        next,
    })
}
