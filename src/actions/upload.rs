//! Upload: push the files upload_log.json lists as pending, failed or skipped (when the file
//! exists, is under max attempts and is due), after queueing new or changed files that
//! match the `sources` globs. One command per file; the result recorded per entry.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde_json::{Map, Value};

use super::retry_policy::{self, AfterFailure};
use crate::actions::walk;
use crate::config::rules::UploadConfig;
use crate::error::Result;
use crate::model::action::Action;
use crate::model::file_key;
use crate::model::upload_status::UploadStatus;
use crate::model::words;
use crate::run::context::Context;
use crate::run::report::{ActionReport, FailedItem, Outcome};
use crate::run::runner::{self, Invocation, Vars};
use crate::state::stat::Stat;
use crate::state::timestamp;
use crate::state::upload_log::{UploadLog, UploadView};

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
    /// Entries memsched will not upload, with the reason: marked `refused`.
    pub refused: Vec<(String, String)>,
    pub waiting: usize,
    pub next_due: Option<SystemTime>,
    pub uploaded: usize,
}

impl UploadPlan {
    #[must_use]
    pub fn has_work(&self) -> bool {
        !self.due.is_empty()
            || !self.missing.is_empty()
            || !self.enqueue.is_empty()
            || !self.refused.is_empty()
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
            self.refused
                .iter()
                .map(|(p, why)| format!("refuse {}: {why}", shown(p))),
        );
        out.extend(self.given_up.iter().map(|(p, n)| {
            let n = usize::try_from(*n).unwrap_or(usize::MAX);
            format!(
                "leave {p}: failed {}, given up",
                words::count(n, "attempt", "attempts")
            )
        }));
        if let Some(next) = self.next_due {
            out.push(format!(
                "{} for their backoff; the next is due at {}",
                words::count(self.waiting, "upload waits", "uploads wait"),
                timestamp(next)
            ));
        }
        out
    }
}

/// Where an entry's file is: absolute, a file key, or relative to the pipeline home.
/// `None` for a key that does not decode (an odd NUL-plus-hex form).
fn resolve(home: &Path, entry: &str) -> Option<PathBuf> {
    let path = file_key::path(entry)?;
    Some(if path.is_absolute() {
        path
    } else {
        home.join(path)
    })
}

/// An entry's path for messages: NULs and other bytes a terminal would act on shown
/// escaped, since the text comes from a file anyone with access to the log wrote.
fn shown(entry: &str) -> String {
    entry.escape_debug().to_string()
}

/// Why an entry's path may not be uploaded, if it may not (issue 10): it must name a
/// regular file that resolves, after following every link, inside the pipeline home or one
/// of the folders the rules allow, and hold no NUL. `Ok` carries the canonical path and the
/// folder it lies in.
fn confine(
    home: &Path,
    allowed: &[PathBuf],
    entry: &str,
) -> std::result::Result<(PathBuf, PathBuf), String> {
    let Some(abs) = resolve(home, entry) else {
        return Err("the path is neither a file name nor a file key memsched wrote".to_owned());
    };
    let bytes = abs.as_os_str().as_bytes();
    if bytes.contains(&0) {
        return Err("the path contains a NUL byte".to_owned());
    }
    if abs == home || entry.is_empty() {
        return Err("the path is empty: it names no file".to_owned());
    }
    let canonical = std::fs::canonicalize(&abs)
        .map_err(|e| format!("cannot resolve {}: {e}", abs.display()))?;
    let Some(root) = allowed.iter().find(|root| canonical.starts_with(root)) else {
        return Err(format!(
            "{} lies outside the pipeline home {} and the folders [actions.upload] allow lists",
            canonical.display(),
            allowed.first().map_or(home, PathBuf::as_path).display()
        ));
    };
    match std::fs::metadata(&canonical) {
        Ok(meta) if meta.is_file() => Ok((canonical.clone(), root.clone())),
        Ok(_) => Err(format!("{} is not a regular file", canonical.display())),
        Err(e) => Err(format!("cannot read {}: {e}", canonical.display())),
    }
}

/// Why a remote may not be used, if it may not: one starting with `-` would be read as an
/// option by the upload command (`--config=evil.conf`), and a `..` component climbs out of
/// the remote folder.
fn check_remote(remote: &str) -> std::result::Result<(), String> {
    if remote.starts_with('-') {
        return Err(format!(
            "the remote {} starts with '-', which the upload command would take for an option",
            shown(remote)
        ));
    }
    if remote.contains('\0') {
        return Err("the remote contains a NUL byte".to_owned());
    }
    if remote.split(['/', ':', '\\']).any(|part| part == "..") {
        return Err(format!(
            "the remote {} has a '..' component, which climbs out of its folder",
            shown(remote)
        ));
    }
    Ok(())
}

/// The folders uploads may come from: the pipeline home first, then the rules' `allow`
/// list (relative entries against the home), each with its links resolved. A folder that
/// does not exist allows nothing.
fn allowed_roots(home: &Path, config: &UploadConfig) -> Vec<PathBuf> {
    std::iter::once(home.to_path_buf())
        .chain(config.allow.iter().map(|a| home.join(a)))
        .filter_map(|root| std::fs::canonicalize(root).ok())
        .collect()
}

/// Builds the upload plan from the log and the source files.
#[must_use]
pub fn plan(ctx: &Context<'_>, config: &UploadConfig, log: &UploadLog) -> UploadPlan {
    let home = &ctx.paths.home;
    let allowed = allowed_roots(home, config);
    let mut plan = UploadPlan::default();
    if !config.sources.is_empty() {
        let folders = crate::config::sources::folders(&config.sources);
        let found = walk::files(
            home,
            &|rel| crate::config::sources::must_enter(&folders, rel),
            &|rel| config.source_set.is_match(rel),
        );
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
            match due(home, &allowed, config, entry, None) {
                Ok(item) => plan.due.push(item),
                Err(why) => plan.refused.push((entry.clone(), why)),
            }
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
        // Following links: a dangling link is a missing file. An entry that does not
        // decode or holds a NUL is not missing: confine refuses it below.
        let missing = match resolve(home, entry) {
            Some(abs) if !abs.as_os_str().as_bytes().contains(&0) => {
                std::fs::metadata(abs).is_err()
            }
            _ => false,
        };
        if missing {
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
            None => match due(home, &allowed, config, entry, e.remote()) {
                Ok(item) => plan.due.push(item),
                Err(why) => plan.refused.push((entry.to_owned(), why)),
            },
        }
    }
    plan
}

/// The upload of `entry`, or why it is refused.
fn due(
    home: &Path,
    allowed: &[PathBuf],
    config: &UploadConfig,
    entry: &str,
    remote: Option<&str>,
) -> std::result::Result<DueUpload, String> {
    let (canonical, root) = confine(home, allowed, entry)?;
    let abs = resolve(home, entry).expect("confine resolved it");
    // Relative to the folder it was found in (the home, or an allowed folder), from the
    // resolved path, so `Data/../Data/x` cannot smuggle a `..` into `{relpath}`.
    let relpath = canonical
        .strip_prefix(&root)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let remote = remote.map_or_else(
        || {
            config
                .remote
                .replace("{relpath}", &relpath.to_string_lossy())
        },
        str::to_owned,
    );
    check_remote(&remote)?;
    Ok(DueUpload {
        entry: entry.to_owned(),
        abs,
        relpath,
        remote,
    })
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
        ("refused", plan.refused.len()),
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
            "would upload {} ({} newly queued), mark {} missing as skipped, refuse {}",
            words::count(plan.due.len(), "file", "files"),
            plan.enqueue.len(),
            plan.missing.len(),
            plan.refused.len()
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
    report.summary = format!(
        "uploaded {uploaded} of {}",
        words::count(plan.due.len(), "file", "files")
    );
    if failed > 0 {
        report
            .summary
            .push_str(&format!(", {failed} failed (retried after backoff)"));
    }
    if !plan.missing.is_empty() {
        report.summary.push_str(&format!(
            "; {} marked skipped",
            words::count(plan.missing.len(), "missing file", "missing files")
        ));
    }
    if !plan.refused.is_empty() {
        report.summary.push_str(&format!(
            "; {} refused (see their error in upload_log.json)",
            words::count(plan.refused.len(), "entry", "entries")
        ));
    }
    if failed > 0 {
        report.error = Some(format!(
            "the upload step failed on {}",
            words::count(failed, "file", "files")
        ));
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
        lock: Some(ctx.paths.action_lock(Action::Upload.name())),
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
        (true, ())
    })?;
    Ok((command, error, next))
}
