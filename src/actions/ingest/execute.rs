//! Ingest's execution: record known content, send the rest to the step in batches,
//! record what it finished and queue what it failed on.

use std::io::Write;
use std::path::PathBuf;
use std::time::SystemTime;

use serde_json::{Map, Value};

use super::batches::{self, Piece};
use super::plan::{Candidate, Plan};
use super::step_result::{self, StepResult, UnusableReport, Verdict};
use crate::actions::retry_policy;
use crate::config::rules::{Backoff, IngestConfig, PassFiles, defaults};
use crate::error::{Error, Result};
use crate::model::action::Action;
use crate::model::task_status::TaskStatus;
use crate::model::words;
use crate::run::context::Context;
use crate::run::resident;
use crate::run::runner::{self, CommandReport, Invocation, Vars};
use crate::state::ingest_hash::IngestHash;
use crate::state::json_file::Edit;
use crate::state::task_queue::TaskQueue;
use crate::state::timestamp;

/// What one execution of an ingest plan did.
#[derive(Debug, Default)]
pub struct Executed {
    /// Files the step finished, now recorded.
    pub done: usize,
    /// Files recorded without running the step (known content).
    pub recorded_only: usize,
    /// Files the step failed on, each now a failed `ingest` task: (file, error).
    pub failed: Vec<(String, String)>,
    pub batches: usize,
    /// Files never sent: their names fit in no batch of arguments (among `failed`).
    pub unsent: usize,
    pub commands: Vec<CommandReport>,
    /// Notes worth showing (paths the step reported that it was not given, say).
    pub notes: Vec<String>,
    /// Files the step failed on that were gone once it ended: no task (see `notes`).
    pub gone: usize,
    /// Gone memories the remove step confirmed: their records are dropped.
    pub removed: usize,
    /// Gone memories the remove step failed on: (file, error). Their records stay
    /// pending removals, tried again by the next run that finds them gone.
    pub removals_failed: Vec<(String, String)>,
    /// Files handed to the step.
    pub sent: usize,
    /// When a signal stopped the run before its last batch: how many batches it had, and
    /// how many files were left unsent for the next run.
    pub stopped: Option<(usize, usize)>,
    /// When the first of the tasks this run queued falls due for retry.
    pub retry_due: Option<SystemTime>,
}

impl Executed {
    /// Notes that tasks queued now fall due at `due` (the earliest is kept).
    fn queued_until(&mut self, due: Option<SystemTime>) {
        self.retry_due = self.retry_due.into_iter().chain(due).min();
    }
}

/// Runs `plan`: records known content, sends the rest in batches, records after each batch
/// so a crash of memsched loses at most the batch in flight (a crash of the machine, at
/// most the last quarter second: the journal is made durable once per slice, and at the
/// end). Stops at the first error that would make a record impossible (a step that cannot
/// start, a state file that cannot be written).
pub fn execute(
    ctx: &Context<'_>,
    config: &IngestConfig,
    plan: &Plan,
    hashes: &mut IngestHash,
    out: &mut Executed,
) -> Result<()> {
    let ran = send_all(ctx, config, plan, hashes, out);
    // Even a run stopped by an error leaves what it recorded durable.
    let committed = hashes.commit();
    ran.and(committed)
}

fn send_all(
    ctx: &Context<'_>,
    config: &IngestConfig,
    plan: &Plan,
    hashes: &mut IngestHash,
    out: &mut Executed,
) -> Result<()> {
    let now = timestamp(ctx.now);
    if !plan.record_only.is_empty() {
        for (candidate, _) in &plan.record_only {
            hashes.record(&candidate.key, &candidate.hash, candidate.stat, &now);
        }
        hashes.flush()?;
        out.recorded_only = plan.record_only.len();
    }
    // Split by bytes as well as by count when the names go in argv (issue 8): a batch
    // past ARG_MAX could never start.
    let pieces = batches::plan(ctx, config, &plan.send);
    let total = batches::batch_count(&pieces);
    // Files done and failed, rate and time left, on a terminal (issue 11: 20,000 files in
    // 313 batches ran 20 s with nothing on screen).
    let mut bar = crate::run::progress::Batches::new(plan.send.len(), total, ctx.progress);
    // Content the step failed on in this run: a gone memory with that content was
    // renamed, and its old path stays in the index until the new one is in.
    let mut failed_content = std::collections::HashSet::new();
    // Files failed without being sent (a name too long, a line break).
    let mut not_sendable = 0;
    for piece in pieces {
        let batch = match piece {
            Piece::Batch(range) => &plan.send[range],
            Piece::TooLong { index, why } => {
                // Fits in no batch: a failed task naming why, with no command of its own
                // (it could not start either); the rest of the run goes on.
                let candidate = &plan.send[index];
                let error = format!("not sent: {why}");
                let failed = [(candidate, error.clone())];
                let due = record_tasks(ctx, config, hashes, &[], &failed, &now, false)?;
                out.queued_until(due);
                out.unsent += 1;
                not_sendable += 1;
                out.failed.push((candidate.shown(), error));
                continue;
            }
            Piece::LineBreak { index, why } => {
                // Never sent, so never split: a failed task with the reason and the fix.
                let candidate = &plan.send[index];
                let error = format!("not sent: {why}");
                let due = record_tasks(
                    ctx,
                    config,
                    hashes,
                    &[],
                    &[(candidate, error.clone())],
                    &now,
                    false,
                )?;
                out.queued_until(due);
                not_sendable += 1;
                out.failed.push((candidate.shown(), error));
                continue;
            }
        };
        if ctx.stopping() {
            out.notes.push(format!(
                "stopped after {} of {}: a signal asked memsched to stop; the rest waits for the next run",
                out.batches,
                words::count(total, "batch", "batches")
            ));
            out.stopped = Some((total, plan.send.len() - out.sent - not_sendable));
            break;
        }
        out.batches += 1;
        out.sent += batch.len();
        let (report, result) = run_batch(
            ctx,
            config,
            &config.command.argv,
            "files",
            batch,
            &BatchLocks::ingest(ctx, config),
        )?;
        let by_path = step_result::index_batch(ctx, batch);
        let names: Vec<String> = batch.iter().map(Candidate::shown).collect();
        let verdicts = result.verdicts(&names, &by_path, &report, &mut out.notes);
        let verdicts = verdicts.map_err(|UnusableReport(msg)| Error::StepReport { msg });
        out.commands.push(report);
        let verdicts = verdicts?;

        let (done_keys, failures, gone_keys) =
            place_verdicts(batch, verdicts, hashes, &now, out, &mut failed_content);
        // Copies of content the step just finished need no run of their own.
        for (copy, original) in &plan.after_send {
            if done_keys.contains(&original.as_str()) {
                hashes.record(&copy.key, &copy.hash, copy.stat, &now);
                out.recorded_only += 1;
            }
        }
        hashes.flush()?;
        out.done += done_keys.len();
        out.gone += gone_keys.len();
        bar.sent(done_keys.len(), failures.len());
        let closed: Vec<&str> = done_keys.iter().chain(&gone_keys).copied().collect();
        let due = record_tasks(ctx, config, hashes, &closed, &failures, &now, true)?;
        out.queued_until(due);
        out.failed
            .extend(failures.into_iter().map(|(c, e)| (c.shown(), e)));
    }
    // Removals come after the additions: a renamed memory is searchable under its new
    // name before its old one goes.
    remove_gone(
        ctx,
        config,
        &plan.remove,
        &failed_content,
        hashes,
        out,
        &now,
    )?;
    Ok(())
}

/// Records what the step finished in a batch, and sorts the rest: files it failed on
/// (their old records marked stale, their content noted), and files gone since they were
/// sent (no task for them). Returns (done keys, failures, gone keys).
fn place_verdicts<'a>(
    batch: &'a [Candidate],
    verdicts: Vec<Verdict>,
    hashes: &mut IngestHash,
    now: &str,
    out: &mut Executed,
    failed_content: &mut std::collections::HashSet<crate::state::ingest_hash::Digest>,
) -> (Vec<&'a str>, Vec<(&'a Candidate, String)>, Vec<&'a str>) {
    let mut done_keys = Vec::new();
    let mut failures = Vec::new();
    // Files gone since they were sent: nothing left to ingest, so no task (issue 21
    // item 5: such tasks could only fail until dead); a task they had is closed.
    let mut gone_keys = Vec::new();
    for (candidate, verdict) in batch.iter().zip(verdicts) {
        match verdict {
            Verdict::Done => {
                hashes.record(&candidate.key, &candidate.hash, candidate.stat, now);
                done_keys.push(candidate.key.as_str());
            }
            Verdict::Failed(error) if is_gone(candidate) => {
                out.notes.push(format!(
                        "{}: the step failed on it ({error}), but it is gone now (deleted, or its folder moved, while the step ran): no task; the next run tells the remove step, and a moved file is sent under its new name",
                        candidate.shown()
                    ));
                // Whatever the step did to the index before failing, the record is
                // no proof now.
                hashes.mark_stale(&candidate.key, now);
                gone_keys.push(candidate.key.as_str());
            }
            Verdict::Failed(error) => {
                // The step may have dropped the old chunks before it failed on the
                // new content: the old record no longer proves what is indexed.
                hashes.mark_stale(&candidate.key, now);
                failed_content.insert(candidate.hash);
                failures.push((candidate, error));
            }
        }
    }
    (done_keys, failures, gone_keys)
}

/// Tells the `remove` step the memories that are gone, in batches as files are sent; a
/// record is dropped once the step confirms its removal.
fn remove_gone(
    ctx: &Context<'_>,
    config: &IngestConfig,
    gone: &[Candidate],
    failed_content: &std::collections::HashSet<crate::state::ingest_hash::Digest>,
    hashes: &mut IngestHash,
    out: &mut Executed,
    now: &str,
) -> Result<()> {
    // A gone memory whose content failed to go in under a new name in this run was
    // renamed: its old path stays in the index until the new one is in.
    let (keep, gone): (Vec<Candidate>, Vec<Candidate>) = gone
        .iter()
        .cloned()
        .partition(|c| failed_content.contains(&c.hash));
    for kept in &keep {
        out.notes.push(format!(
            "kept {} in the index: its content failed to go in under its new name",
            kept.shown()
        ));
    }
    let gone = &gone[..];
    let Some(argv) = &config.remove else {
        return Ok(());
    };
    if gone.is_empty() {
        return Ok(());
    }
    // Written ahead: once a removal is sent, whether the index still holds the memory is
    // unknown until the step confirms, even if memsched is killed meanwhile.
    for candidate in gone {
        hashes.mark_stale(&candidate.key, now);
    }
    hashes.flush()?;
    for piece in batches::plan(ctx, config, gone) {
        let batch = match piece {
            Piece::Batch(range) => &gone[range],
            Piece::TooLong { index, why } | Piece::LineBreak { index, why } => {
                out.removals_failed
                    .push((gone[index].shown(), format!("not sent: {why}")));
                continue;
            }
        };
        if ctx.stopping() {
            out.notes.push(
                "removals not sent: a signal asked memsched to stop; they wait for the next run"
                    .to_owned(),
            );
            break;
        }
        out.batches += 1;
        let (report, result) = run_batch(
            ctx,
            config,
            argv,
            "remove",
            batch,
            &BatchLocks::ingest(ctx, config),
        )?;
        let by_path = step_result::index_batch(ctx, batch);
        let names: Vec<String> = batch.iter().map(Candidate::shown).collect();
        let verdicts = result.verdicts(&names, &by_path, &report, &mut out.notes);
        let verdicts = verdicts.map_err(|UnusableReport(msg)| Error::StepReport { msg });
        out.commands.push(report);
        let mut confirmed = 0;
        for (candidate, verdict) in batch.iter().zip(verdicts?) {
            match verdict {
                Verdict::Done => {
                    hashes.remove(&candidate.key, now);
                    confirmed += 1;
                }
                Verdict::Failed(error) => out.removals_failed.push((candidate.shown(), error)),
            }
        }
        if confirmed > 0 {
            hashes.flush()?;
        }
        out.removed += confirmed;
    }
    Ok(())
}

/// The resident step `argv` (the ingest or the remove command) makes: started in the
/// pipeline home with the steps' environment, holding ingest.lock.
fn resident_spec(ctx: &Context<'_>, config: &IngestConfig, argv: &[String]) -> resident::Spec {
    resident::Spec {
        argv: runner::expand(argv, &Vars::default()),
        cwd: ctx.paths.home.clone(),
        env: ctx.step_env(Action::Ingest, None),
        lock: ctx.paths.action_lock(Action::Ingest.name()),
        idle_exit: config.resident.and_then(|r| r.idle_exit),
        scripts: runner::program::scripts(ctx.paths, ctx.rules, argv),
    }
}

/// The argument vectors of the resident steps these rules start (the command, and the
/// remove command when it differs): what a run of them may keep from an earlier run.
#[must_use]
pub fn resident_argvs(config: &IngestConfig) -> Vec<Vec<std::ffi::OsString>> {
    config
        .remove
        .iter()
        .chain(std::iter::once(&config.command.argv))
        .map(|argv| runner::expand(argv, &Vars::default()))
        .collect()
}

/// The locks a one-shot run of the step holds and hands on: ingest.lock for an ingest
/// run; retry.lock and ingest.lock for a retry of failed files (see `runner::Invocation`).
#[derive(Debug, Clone)]
pub(super) struct BatchLocks {
    pub(super) lock: PathBuf,
    pub(super) step_lock: Option<PathBuf>,
    /// Per batch (ingest's `timeout`, or retry's for a retried batch).
    pub(super) timeout: std::time::Duration,
    /// `MEMSCHED_ACTION` of a one-shot step: who runs it (a resident step has the
    /// environment it was started with).
    pub(super) action: Action,
}

impl BatchLocks {
    /// What an ingest run's batches hold.
    fn ingest(ctx: &Context<'_>, config: &IngestConfig) -> BatchLocks {
        BatchLocks {
            lock: ctx.paths.action_lock(Action::Ingest.name()),
            step_lock: None,
            timeout: config.command.timeout,
            action: Action::Ingest,
        }
    }
}

/// Runs `argv` (the ingest or the remove command; `kind` says which, `"files"` or
/// `"remove"`) on one batch and reads what it reported: a one-shot step through
/// MEMSCHED_RESULT, a resident one through its answer line.
pub(super) fn run_batch(
    ctx: &Context<'_>,
    config: &IngestConfig,
    argv: &[String],
    kind: &str,
    batch: &[Candidate],
    locks: &BatchLocks,
) -> Result<(CommandReport, StepResult)> {
    if config.resident.is_some() {
        let spec = resident_spec(ctx, config, argv);
        let id = resident::next_id();
        let files: Vec<&std::path::Path> = batch.iter().map(|c| c.abs.as_path()).collect();
        let line = resident::request_line(id, kind, &files);
        let served = resident::serve(&spec, Action::Ingest.name(), id, line, locks.timeout)?;
        let result = match served.answer {
            resident::Answer::Line(line) => StepResult::answer(&line),
            resident::Answer::Wrong(why) => StepResult::Malformed(why),
            resident::Answer::None(why) => StepResult::Unanswered(why),
        };
        return Ok((served.report, result));
    }
    let scratch = tempfile::Builder::new()
        .prefix("memsched-ingest-")
        .tempdir()
        .map_err(|source| Error::state_write(&std::env::temp_dir(), source))?;
    let result_path = scratch.path().join("result.json");
    let list_path = scratch.path().join("files.txt");
    let files: Vec<PathBuf> = batch.iter().map(|c| c.abs.clone()).collect();
    let joined = |end: u8| {
        let mut bytes = Vec::new();
        for f in &files {
            bytes.extend_from_slice(std::os::unix::ffi::OsStrExt::as_bytes(f.as_os_str()));
            bytes.push(end);
        }
        bytes
    };
    let (stdin, list) = match config.pass_files {
        PassFiles::Args => (None, None),
        PassFiles::StdinLines => (Some(joined(b'\n')), None),
        PassFiles::StdinNul => (Some(joined(0)), None),
        PassFiles::ListFile => {
            std::fs::File::create(&list_path)
                .and_then(|mut f| f.write_all(&joined(b'\n')))
                .map_err(|source| Error::state_write(&list_path, source))?;
            (None, Some(list_path.as_path()))
        }
    };
    let vars = Vars {
        files: if config.pass_files == PassFiles::Args {
            &files
        } else {
            &[]
        },
        list,
        ..Vars::default()
    };
    let invocation = Invocation {
        argv: runner::expand(argv, &vars),
        cwd: ctx.paths.home.clone(),
        env: ctx.step_env(locks.action, Some(result_path.clone().into_os_string())),
        stdin,
        timeout: locks.timeout,
        lock: Some(locks.lock.clone()),
        step_lock: locks.step_lock.clone(),
        scripts: runner::program::scripts(ctx.paths, ctx.rules, argv),
        item: Some(match batch {
            [one] => one.shown(),
            many => format!("{} files", many.len()),
        }),
    };
    let report = runner::run(&invocation)?;
    let result = StepResult::read(&result_path, batch.len());
    Ok((report, result))
}

/// Whether `candidate` is no longer in data_dir (its path names nothing, not even a link).
fn is_gone(candidate: &Candidate) -> bool {
    matches!(
        candidate.abs.symlink_metadata(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound
    )
}

/// Failed files become failed `ingest` tasks (one per file, updated in place when the file
/// fails again), due after their backoff; files finished now, or gone, close any task
/// they had. The journal is made durable first whenever the queue changes: a task closed
/// for a file is never on disk before its record. Returns when the first task it queued
/// falls due.
fn record_tasks(
    ctx: &Context<'_>,
    config: &IngestConfig,
    hashes: &mut IngestHash,
    done: &[&str],
    failures: &[(&Candidate, String)],
    now: &str,
    own_command: bool,
) -> Result<Option<SystemTime>> {
    if failures.is_empty() && done.is_empty() {
        return Ok(None);
    }
    TaskQueue::update(ctx.paths, |queue| {
        let mut changed = false;
        let mut first_due = None;
        for key in done {
            let id = task_id(key);
            if queue
                .get(&id)
                .is_some_and(|t| t.status() != Some(TaskStatus::Done))
            {
                let mut fields = Map::new();
                fields.insert("status".into(), TaskStatus::Done.into());
                fields.insert("updated_at".into(), now.into());
                queue.upsert(&id, fields);
                changed = true;
            }
        }
        for (candidate, error) in failures {
            let id = task_id(&candidate.key);
            let existing = queue.get(&id);
            // Content that changed since the last failure starts its attempts afresh.
            let attempts = match existing {
                Some(t) if t.hash() == Some(candidate.hash.text().as_str()) => t.attempts() + 1,
                _ => 1,
            };
            let is_new = existing.is_none();
            let mut fields = Map::new();
            fields.insert("step".into(), "ingest".into());
            fields.insert("status".into(), TaskStatus::Failed.into());
            fields.insert("attempts".into(), attempts.into());
            if is_new {
                fields.insert("priority".into(), "normal".into());
                fields.insert("created_at".into(), now.into());
            }
            fields.insert("updated_at".into(), now.into());
            // Not at once: a file that fails for good (not UTF-8) would spend an attempt
            // on the spot (issue 19 item 4). Its backoff, as retry's own failures get.
            let due = retry_policy::due_after(&retry_backoff(ctx), attempts, &id, ctx.clock.now());
            first_due = first_due.into_iter().chain(Some(due)).min();
            fields.insert("next_attempt_at".into(), timestamp(due).into());
            fields.insert("last_error".into(), error.as_str().into());
            fields.insert("file".into(), candidate.key.as_str().into());
            fields.insert("hash".into(), candidate.hash.text().into());
            if let Some(command) = single_file_command(config, candidate).filter(|_| own_command) {
                fields.insert("command".into(), command);
            }
            queue.upsert(&id, fields);
            changed = true;
        }
        if !changed {
            return Edit::Unchanged(Ok(None));
        }
        let committed = hashes.commit();
        Edit::changed_if(committed.is_ok(), committed.map(|()| first_due))
    })?
}

/// The backoff of `[actions.retry]`, or its defaults when there is no such table.
fn retry_backoff(ctx: &Context<'_>) -> Backoff {
    ctx.rules.retry.as_ref().map_or(
        Backoff {
            initial: defaults::BACKOFF_INITIAL,
            factor: defaults::BACKOFF_FACTOR,
            max: defaults::BACKOFF_MAX,
            jitter: defaults::BACKOFF_JITTER,
        },
        |retry| retry.backoff,
    )
}

/// The id of the task for an ingest failure of `key`.
#[must_use]
pub fn task_id(key: &str) -> String {
    format!("ingest:{key}")
}

/// The ingest command for this one file, when it can be written down in JSON: files passed
/// as arguments and a name that is valid UTF-8. Otherwise the retry action re-runs the
/// file from the task's `file`.
pub(super) fn single_file_command(config: &IngestConfig, candidate: &Candidate) -> Option<Value> {
    if config.pass_files != PassFiles::Args || config.resident.is_some() {
        return None;
    }
    let files = [candidate.abs.clone()];
    let argv = runner::expand(
        &config.command.argv,
        &Vars {
            files: &files,
            ..Vars::default()
        },
    );
    let argv: Option<Vec<Value>> = argv
        .into_iter()
        .map(|a| a.into_string().ok().map(Value::from))
        .collect();
    argv.map(Value::Array)
}
