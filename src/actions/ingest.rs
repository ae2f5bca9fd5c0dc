//! Ingest: plan the data files whose content is not yet in ingest_hash.json, send them to
//! the ingest step in batches, record what it finished and queue what it failed on.

pub mod batches;
mod decide;
mod hash;
mod hints;
mod plan;
mod scan;
mod step_result;

pub use hash::hash_one;
pub use hints::{Prehashed, WatcherHints};
pub use plan::{Candidate, Known, Plan, plan};
pub use scan::{Scan, scan};

use std::io::Write;
use std::path::PathBuf;

use serde_json::{Map, Value};

use crate::config::rules::{IngestConfig, PassFiles};
use crate::error::{Error, Result};
use crate::model::action::Action;
use crate::model::task_status::TaskStatus;
use crate::model::words;
use crate::run::context::Context;
use crate::run::report::{ActionReport, FailedItem, Outcome};
use crate::run::runner::{self, CommandReport, Invocation, Vars};
use crate::state::ingest_hash::{HeldGuard, IngestHash};
use crate::state::task_queue::TaskQueue;
use crate::state::timestamp;
use batches::Piece;
use step_result::{StepResult, UnusableReport, Verdict};

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
}

/// An event run with at most this many changed paths looks at them before loading the
/// state, on the run's own thread: starting a second thread would cost more.
const FEW_CHANGED: usize = 64;

/// The whole ingest action: load state, plan, execute (unless a dry run), report.
#[must_use]
pub fn perform(ctx: &Context<'_>, config: &IngestConfig, hints: &WatcherHints) -> ActionReport {
    let mut report = ActionReport::new(Action::Ingest, Outcome::NothingToDo, "");
    let started = std::time::Instant::now();
    let scanning = || {
        let scanned = scan(&ctx.paths.data_dir, config, hints);
        (scanned, started.elapsed())
    };
    let loading = || {
        let loaded = hints
            .manifest
            .lock(&ctx.paths.ingest_hash)
            .and_then(|h| Ok((h, TaskQueue::load(&ctx.paths.task_queue)?)));
        (loaded, started.elapsed())
    };
    // Scanning data_dir and reading the state files are independent: on a large, fully
    // ingested tree they cost about the same, so they run side by side. A few changed
    // paths cost less than a thread (issue 8: a saved file's latency).
    let few = hints
        .changed
        .as_ref()
        .is_some_and(|c| c.len() <= FEW_CHANGED);
    let ((scanned, scan_in), (loaded, state_in)) = if few {
        (scanning(), loading())
    } else {
        std::thread::scope(|s| {
            let scanning = s.spawn(scanning);
            let loaded = loading();
            (scanning.join().expect("the scan does not panic"), loaded)
        })
    };
    // Both state files must parse before anything runs: a failure the queue could not
    // record would be lost.
    let (mut hashes, queue) = match loaded {
        Ok(loaded) => loaded,
        Err(e) => return report.fail(&e),
    };
    let scanned = match scanned {
        Ok(scanned) => scanned,
        Err(e) => return report.fail(&e),
    };
    let read_in = started.elapsed();
    let plan = plan(ctx, config, scanned, &mut hashes, &queue, hints);
    drop(queue);
    log::debug!(
        "ingest: scanned {} in {scan_in:?}, held {} records in {state_in:?} (side by side), planned in {:?}",
        if plan.changed_only {
            "the changed paths"
        } else {
            "data_dir"
        },
        hashes.len(),
        started.elapsed().saturating_sub(read_in)
    );
    report.reasons = plan.reasons();
    report.set_found(plan.send.len() + plan.record_only.len() + plan.after_send.len());
    if !plan.deferred.is_empty() {
        // Files still being written are worth another look once they have settled.
        let next = ctx.now + config.settle;
        report.set_next_due(next);
    }
    let waiting = waiting_text(&plan);
    if !plan.has_work() || ctx.dry_run {
        report.counts = counts(&plan, None);
        if plan.has_work() {
            report.outcome = Outcome::WouldRun;
            report.summary = would_text(ctx, config, &plan, &waiting);
        } else {
            report.summary = nothing_text(&plan, &waiting);
        }
        return compact(ctx, hints, hashes, report);
    }
    let mut executed = Executed::default();
    let result = execute(ctx, config, &plan, &mut hashes, &mut executed);
    report.counts = counts(&plan, Some(&executed));
    report.reasons.extend(executed.notes.iter().cloned());
    report.failed_items = executed
        .failed
        .iter()
        .map(|(item, error)| FailedItem {
            item: item.clone(),
            error: error.clone(),
        })
        .collect();
    report.commands = std::mem::take(&mut executed.commands);
    if let Err(e) = result {
        // What is held may be ahead of what reached disk: the next run reads it again.
        hashes.forget();
        return report.fail(&e);
    }
    let failed = executed.failed.len();
    report.outcome = if failed > 0 {
        Outcome::Failed
    } else {
        Outcome::Ran
    };
    if failed > 0 {
        report.error = Some(format!(
            "the ingest step failed on {}",
            words::count(failed, "file", "files")
        ));
    }
    report.summary = ran_text(&plan, &executed, &waiting);
    compact(ctx, hints, hashes, report)
}

/// The line of a run that executed: what it sent, what it recorded without sending.
fn ran_text(plan: &Plan, executed: &Executed, waiting: &str) -> String {
    let failed = executed.failed.len();
    let mut parts = Vec::new();
    if !plan.send.is_empty() {
        let mut summary = format!(
            "sent {} in {}: {} done, {} failed{}",
            words::count(plan.send.len() - executed.unsent, "file", "files"),
            words::count(executed.batches, "batch", "batches"),
            executed.done,
            failed - executed.unsent,
            batches::unsent_text(executed.unsent),
        );
        if failed > 0 {
            summary.push_str(" (queued in task_queue.json for retry)");
        }
        parts.push(summary);
    }
    if executed.recorded_only > 0 {
        parts.push(format!(
            "recorded {} with known content",
            words::count(executed.recorded_only, "file", "files")
        ));
    }
    format!("{}{waiting}", parts.join("; "))
}

/// Folds the journal into ingest_hash.json after a walk of all of data_dir (startup, tick,
/// rescan, `--once`: so the file is never more than a tick behind), or once the journal
/// has grown large; an event run otherwise leaves the other records alone.
fn compact(
    ctx: &Context<'_>,
    hints: &WatcherHints,
    mut hashes: HeldGuard<'_>,
    report: ActionReport,
) -> ActionReport {
    let due = hashes.has_journal() && (hints.changed.is_none() || hashes.journal_is_large());
    if ctx.dry_run || !due {
        return report;
    }
    match hashes.save() {
        Ok(()) => report,
        Err(e) => {
            hashes.forget();
            report.fail(&e)
        }
    }
}

/// "4 files, all ingested (0 read)", "6 files: 5 ingested, 1 awaiting retry (1 read)",
/// "1 changed file, ingested (1 read)": every count true, every noun agreeing with its number.
fn nothing_text(plan: &Plan, waiting: &str) -> String {
    let (one, many) = if plan.changed_only {
        ("changed file", "changed files")
    } else {
        ("file", "files")
    };
    let files = words::count(plan.scanned, one, many);
    let ingested = plan.ingested();
    let read = format!("({} read)", plan.hashed);
    if ingested == plan.scanned {
        let all = match plan.scanned {
            0 => return format!("{files}{waiting}"),
            1 => "ingested",
            2 => "both ingested",
            _ => "all ingested",
        };
        format!("{files}, {all} {read}{waiting}")
    } else {
        // The files not ingested are what `waiting` lists; the read count closes the line.
        let rest = waiting.strip_prefix("; ").unwrap_or(waiting);
        let rest = if rest.is_empty() {
            String::new()
        } else {
            format!(", {rest}")
        };
        format!("{files}: {ingested} ingested{rest} {read}")
    }
}

/// The dry run's line: what a run would do.
fn would_text(ctx: &Context<'_>, config: &IngestConfig, plan: &Plan, waiting: &str) -> String {
    let mut parts = Vec::new();
    if !plan.send.is_empty() {
        let pieces = batches::plan(ctx, config, &plan.send);
        let unsent = pieces.len() - batches::batch_count(&pieces);
        parts.push(format!(
            "would send {} in {}{}",
            words::count(plan.send.len() - unsent, "file", "files"),
            words::count(batches::batch_count(&pieces), "batch", "batches"),
            batches::unsent_text(unsent),
        ));
    }
    let known = plan.record_only.len() + plan.after_send.len();
    if known > 0 {
        parts.push(format!(
            "{} {} with known content",
            if parts.is_empty() {
                "would record"
            } else {
                "record"
            },
            words::count(known, "file", "files")
        ));
    }
    format!("{}{waiting}", parts.join(", "))
}

/// "; 2 still being written, 1 awaiting retry" or "".
fn waiting_text(plan: &Plan) -> String {
    let parts: Vec<String> = [
        (plan.deferred.len(), "still being written"),
        (plan.awaiting_retry.len(), "awaiting retry"),
        (plan.given_up.len(), "given up (dead task)"),
        (plan.removed.len(), "removed from data_dir"),
        (plan.unreadable.len(), "unreadable"),
    ]
    .into_iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("; {}", parts.join(", "))
    }
}

/// Runs `plan`: records known content, sends the rest in batches, records after each batch
/// so a crash loses at most the batch in flight. Stops at the first error that would make
/// a record impossible (a step that cannot start, a state file that cannot be written).
pub fn execute(
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
    for piece in pieces {
        let batch = match piece {
            Piece::Batch(range) => &plan.send[range],
            Piece::TooLong { index, why } => {
                // Fits in no batch: a failed task naming why, with no command of its own
                // (it could not start either); the rest of the run goes on.
                let candidate = &plan.send[index];
                let error = format!("not sent: {why}");
                record_tasks(ctx, config, &[], &[(candidate, error.clone())], &now, false)?;
                out.unsent += 1;
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
            break;
        }
        out.batches += 1;
        let (report, result) = run_batch(ctx, config, batch)?;
        let by_path = step_result::index_batch(ctx, batch);
        let names: Vec<String> = batch.iter().map(Candidate::shown).collect();
        let verdicts = result.verdicts(&names, &by_path, &report, &mut out.notes);
        let verdicts = verdicts.map_err(|UnusableReport(msg)| Error::StepReport { msg });
        out.commands.push(report);
        let verdicts = verdicts?;

        let mut done_keys = Vec::new();
        let mut failures = Vec::new();
        for (candidate, verdict) in batch.iter().zip(verdicts) {
            match verdict {
                Verdict::Done => {
                    hashes.record(&candidate.key, &candidate.hash, candidate.stat, &now);
                    done_keys.push(candidate.key.as_str());
                }
                Verdict::Failed(error) => failures.push((candidate, error)),
            }
        }
        // Copies of content the step just finished need no run of their own.
        for (copy, original) in &plan.after_send {
            if done_keys.contains(&original.as_str()) {
                hashes.record(&copy.key, &copy.hash, copy.stat, &now);
                out.recorded_only += 1;
            }
        }
        if !done_keys.is_empty() {
            hashes.flush()?;
        }
        out.done += done_keys.len();
        bar.sent(done_keys.len(), failures.len());
        record_tasks(ctx, config, &done_keys, &failures, &now, true)?;
        out.failed
            .extend(failures.into_iter().map(|(c, e)| (c.shown(), e)));
    }
    Ok(())
}

/// Runs the step on one batch and reads what it reported.
fn run_batch(
    ctx: &Context<'_>,
    config: &IngestConfig,
    batch: &[Candidate],
) -> Result<(CommandReport, StepResult)> {
    let scratch = tempfile::Builder::new()
        .prefix("memsched-ingest-")
        .tempdir()
        .map_err(|source| Error::StateWrite {
            path: std::env::temp_dir(),
            source,
        })?;
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
                .map_err(|source| Error::StateWrite {
                    path: list_path.clone(),
                    source,
                })?;
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
        argv: runner::expand(&config.command.argv, &vars),
        cwd: ctx.paths.home.clone(),
        env: ctx.step_env(Action::Ingest, Some(result_path.clone().into_os_string())),
        stdin,
        timeout: config.command.timeout,
        lock: Some(ctx.paths.action_lock(Action::Ingest.name())),
    };
    let report = runner::run(&invocation)?;
    let result = StepResult::read(&result_path);
    Ok((report, result))
}

/// Failed files become failed `ingest` tasks (one per file, updated in place when the file
/// fails again); files finished now close any task they had.
fn record_tasks(
    ctx: &Context<'_>,
    config: &IngestConfig,
    done: &[&str],
    failures: &[(&Candidate, String)],
    now: &str,
    own_command: bool,
) -> Result<()> {
    if failures.is_empty() && done.is_empty() {
        return Ok(());
    }
    TaskQueue::update(ctx.paths, |queue| {
        let mut changed = false;
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
            fields.insert("next_attempt_at".into(), now.into());
            fields.insert("last_error".into(), error.as_str().into());
            fields.insert("file".into(), candidate.key.as_str().into());
            fields.insert("hash".into(), candidate.hash.text().into());
            if let Some(command) = single_file_command(config, candidate).filter(|_| own_command) {
                fields.insert("command".into(), command);
            }
            queue.upsert(&id, fields);
            changed = true;
        }
        (changed, ())
    })
}

/// The id of the task for an ingest failure of `key`.
#[must_use]
pub fn task_id(key: &str) -> String {
    format!("ingest:{key}")
}

/// The ingest command for this one file, when it can be written down in JSON: files passed
/// as arguments and a name that is valid UTF-8. Otherwise the retry action re-runs the
/// file from the task's `file`.
fn single_file_command(config: &IngestConfig, candidate: &Candidate) -> Option<Value> {
    if config.pass_files != PassFiles::Args {
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

/// Counts for the report, in the order a reader wants them.
#[must_use]
pub fn counts(plan: &Plan, executed: Option<&Executed>) -> Map<String, Value> {
    let mut c = Map::new();
    let mut put = |k: &str, v: usize| {
        c.insert(k.to_owned(), Value::from(v));
    };
    put("scanned", plan.scanned);
    put("unchanged", plan.unchanged);
    put("hashed", plan.hashed);
    put("read_by_watcher", plan.prehashed);
    put("to_send", plan.send.len());
    put("modified", plan.modified);
    put(
        "known_content",
        plan.record_only.len() + plan.after_send.len(),
    );
    put("deferred", plan.deferred.len());
    put("awaiting_retry", plan.awaiting_retry.len());
    put("given_up", plan.given_up.len());
    put("removed", plan.removed.len());
    put("unreadable", plan.unreadable.len());
    if let Some(e) = executed {
        put("done", e.done);
        put("failed", e.failed.len());
        put("recorded_only", e.recorded_only);
        put("batches", e.batches);
    }
    c
}
