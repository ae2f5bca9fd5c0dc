//! Upload: push the files upload_log.json lists as pending, failed or skipped (when the file
//! exists, is under max attempts and is due), after queueing new or changed files that
//! match the `sources` globs. One command per file; the result recorded per entry.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde_json::{Map, Value};

use super::Context;
use super::retry_policy::{self, AfterFailure};
use crate::action::Action;
use crate::error::Result;
use crate::file_key;
use crate::report::{ActionReport, FailedItem, Outcome};
use crate::rules::UploadConfig;
use crate::runner::{self, Invocation, Vars};
use crate::state::stat::Stat;
use crate::state::timestamp;
use crate::state::upload_log::{UploadLog, UploadView};
use crate::upload_status::UploadStatus;
use crate::walk;

/// An entry to upload now.
#[derive(Debug, Clone)]
pub struct DueUpload {
    /// The entry's `path`, as written in the log.
    pub entry: String,
    pub abs: PathBuf,
    pub relpath: PathBuf,
    pub remote: String,
}

#[derive(Debug, Default)]
pub struct UploadPlan {
    /// Source files to queue as pending: (entry path, why).
    pub enqueue: Vec<(String, &'static str)>,
    pub due: Vec<DueUpload>,
    /// Outstanding entries whose file is gone: marked skipped, not retried.
    pub missing: Vec<String>,
    /// Entries already skipped whose file is still gone.
    pub still_missing: usize,
    /// Failed entries out of attempts: (entry, attempts).
    pub given_up: Vec<(String, u64)>,
    pub waiting: usize,
    pub next_due: Option<SystemTime>,
    pub uploaded: usize,
}

impl UploadPlan {
    #[must_use]
    pub fn has_work(&self) -> bool {
        !self.due.is_empty() || !self.missing.is_empty() || !self.enqueue.is_empty()
    }

    #[must_use]
    pub fn reasons(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .enqueue
            .iter()
            .map(|(p, why)| format!("queue {p}: {why}"))
            .collect();
        out.extend(
            self.due
                .iter()
                .map(|d| format!("upload {} -> {}", d.entry, d.remote)),
        );
        out.extend(self.missing.iter().map(|p| {
            format!("skip {p}: the file is gone; it is not retried unless it comes back")
        }));
        out.extend(
            self.given_up
                .iter()
                .map(|(p, n)| format!("leave {p}: failed {n} attempts, given up")),
        );
        if let Some(next) = self.next_due {
            out.push(format!(
                "{} uploads wait for their backoff; the next is due at {}",
                self.waiting,
                timestamp(next)
            ));
        }
        out
    }
}

/// Where an entry's file is: absolute, a file key, or relative to the pipeline home.
fn resolve(home: &Path, entry: &str) -> PathBuf {
    let path = file_key::path(entry).unwrap_or_else(|| PathBuf::from(entry));
    if path.is_absolute() {
        path
    } else {
        home.join(path)
    }
}

/// Builds the upload plan from the log and the source files.
#[must_use]
pub fn plan(ctx: &Context<'_>, config: &UploadConfig, log: &UploadLog) -> UploadPlan {
    let home = &ctx.paths.home;
    let mut plan = UploadPlan::default();
    if !config.sources.is_empty() {
        let found = walk::files(home, &|_| true, &|rel| config.source_set.is_match(rel));
        for file in found.files {
            let entry = file_key::key(&file.rel);
            let stat = Stat::of(&file.meta);
            match log.get(&entry) {
                None => plan.enqueue.push((entry, "new file matching sources")),
                Some(e)
                    if e.status() == UploadStatus::Uploaded && e.changed_since_upload(&stat) =>
                {
                    plan.enqueue.push((entry, "changed since its upload"));
                }
                Some(_) => {}
            }
        }
        for (entry, _) in &plan.enqueue {
            plan.due.push(due(home, config, entry, None));
        }
    }
    for e in log.entries() {
        let Some(entry) = e.path() else { continue };
        let status = e.status();
        if status == UploadStatus::Uploaded {
            plan.uploaded += 1;
            continue;
        }
        if !status.is_outstanding() || plan.enqueue.iter().any(|(p, _)| p == entry) {
            continue;
        }
        let abs = resolve(home, entry);
        if std::fs::symlink_metadata(&abs).is_err() {
            if status == UploadStatus::Skipped {
                plan.still_missing += 1;
            } else {
                plan.missing.push(entry.to_owned());
            }
            continue;
        }
        if status == UploadStatus::Failed && e.attempts() >= u64::from(config.max_attempts) {
            plan.given_up.push((entry.to_owned(), e.attempts()));
            continue;
        }
        match e.next_attempt_at().filter(|at| *at > ctx.now) {
            Some(at) => {
                plan.waiting += 1;
                plan.next_due = Some(plan.next_due.map_or(at, |n| n.min(at)));
            }
            None => plan.due.push(due(home, config, entry, e.remote())),
        }
    }
    plan
}

fn due(home: &Path, config: &UploadConfig, entry: &str, remote: Option<&str>) -> DueUpload {
    let abs = resolve(home, entry);
    let relpath = match abs.strip_prefix(home) {
        Ok(rel) => rel.to_path_buf(),
        Err(_) => abs.file_name().map(PathBuf::from).unwrap_or_default(),
    };
    let remote = remote.map_or_else(
        || {
            config
                .remote
                .replace("{relpath}", &relpath.to_string_lossy())
        },
        str::to_owned,
    );
    DueUpload {
        entry: entry.to_owned(),
        abs,
        relpath,
        remote,
    }
}

/// The whole upload action.
#[must_use]
pub fn perform(ctx: &Context<'_>, config: &UploadConfig) -> ActionReport {
    let mut report = ActionReport::new(Action::Upload, Outcome::NothingToDo, "");
    let log = match UploadLog::load(&ctx.paths.upload_log) {
        Ok(log) => log,
        Err(e) => return report.fail(&e),
    };
    let plan = plan(ctx, config, &log);
    drop(log);
    report.reasons = plan.reasons();
    report.set_found(plan.due.len());
    for (k, v) in [
        ("queued", plan.enqueue.len()),
        ("due", plan.due.len()),
        ("missing", plan.missing.len() + plan.still_missing),
        ("given_up", plan.given_up.len()),
        ("waiting", plan.waiting),
        ("uploaded_before", plan.uploaded),
    ] {
        report.counts.insert(k.into(), v.into());
    }
    if let Some(next) = plan.next_due {
        report.set_next_due(next);
    }
    if !plan.has_work() {
        report.summary = format!(
            "{} uploaded, none outstanding and due{}",
            plan.uploaded,
            if plan.given_up.is_empty() {
                String::new()
            } else {
                format!("; {} given up", plan.given_up.len())
            }
        );
        return report;
    }
    if ctx.dry_run {
        report.outcome = Outcome::WouldRun;
        report.summary = format!(
            "would upload {} files ({} newly queued), mark {} missing as skipped",
            plan.due.len(),
            plan.enqueue.len(),
            plan.missing.len()
        );
        return report;
    }
    if let Err(e) = queue_and_skip(ctx, &plan) {
        return report.fail(&e);
    }
    let uploaded = match upload_due(ctx, config, &plan, &mut report) {
        Ok(n) => n,
        Err(e) => return report.fail(&e),
    };
    let failed = report.failed_items.len();
    report.counts.insert("uploaded".into(), uploaded.into());
    report.counts.insert("failed".into(), failed.into());
    report.outcome = if failed > 0 {
        Outcome::Failed
    } else {
        Outcome::Ran
    };
    report.summary = format!("uploaded {uploaded} of {} files", plan.due.len());
    if failed > 0 {
        report
            .summary
            .push_str(&format!(", {failed} failed (retried after backoff)"));
    }
    if !plan.missing.is_empty() {
        report.summary.push_str(&format!(
            "; {} missing files marked skipped",
            plan.missing.len()
        ));
    }
    if failed > 0 {
        report.error = Some(format!("the upload step failed on {failed} files"));
    }
    report
}

/// Uploads the due entries in order, until done or a signal asks to stop; returns how many
/// were uploaded. Commands, failures and the next due time go into `report`.
fn upload_due(
    ctx: &Context<'_>,
    config: &UploadConfig,
    plan: &UploadPlan,
    report: &mut ActionReport,
) -> Result<usize> {
    let mut uploaded = 0;
    let mut next_due = plan.next_due;
    for item in &plan.due {
        if ctx.stopping() {
            report.reasons.push(
                "stopped early: a signal asked memsched to stop; the rest waits for the next run"
                    .to_owned(),
            );
            break;
        }
        let (command, error, next) = upload_one(ctx, config, item)?;
        next_due = next_due.into_iter().chain(next).min();
        report.commands.extend(command);
        match error {
            None => uploaded += 1,
            Some(error) => report.failed_items.push(FailedItem {
                item: item.entry.clone(),
                error,
            }),
        }
    }
    if let Some(next) = next_due {
        report.set_next_due(next);
    }
    Ok(uploaded)
}

/// Queues new and changed source files, and marks entries whose file is gone as skipped.
fn queue_and_skip(ctx: &Context<'_>, plan: &UploadPlan) -> Result<()> {
    if plan.enqueue.is_empty() && plan.missing.is_empty() {
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
                    resolve(&ctx.paths.home, entry).display()
                )
                .into(),
            );
            fields.insert("updated_at".into(), now.as_str().into());
            log.upsert(entry, fields);
        }
        (true, ())
    })
}

/// Runs the upload command for one entry and records the result.
fn upload_one(
    ctx: &Context<'_>,
    config: &UploadConfig,
    item: &DueUpload,
) -> Result<(
    Option<runner::CommandReport>,
    Option<String>,
    Option<SystemTime>,
)> {
    let vars = Vars {
        path: Some(&item.abs),
        relpath: Some(&item.relpath),
        remote: Some(&item.remote),
        ..Vars::default()
    };
    let invocation = Invocation {
        argv: runner::expand(&config.command.argv, &vars),
        cwd: ctx.paths.home.clone(),
        env: ctx.step_env(Action::Upload, None),
        stdin: None,
        timeout: config.command.timeout,
    };
    let stat = std::fs::symlink_metadata(&item.abs)
        .ok()
        .map(|m| Stat::of(&m));
    let (command, error) = match runner::run(&invocation) {
        Ok(r) if r.success() => (Some(r), None),
        Ok(r) => {
            let e = r.failure_text();
            (Some(r), Some(e))
        }
        Err(e) => (None, Some(e.chain())),
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
                    fields.insert("mtime_ns".into(), stat.mtime_ns.into());
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
        (true, ())
    })?;
    Ok((command, error, next))
}
