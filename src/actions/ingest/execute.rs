//! Ingest's execution: record known content, send the rest to the step in batches,
//! record what it finished and queue what it failed on.

use std::collections::HashSet;
use std::time::SystemTime;

use serde_json::Map;

use super::batches::{self, Piece};
use super::fresh;
use super::hints::FreshSaves;
use super::plan::{Candidate, Plan};
use super::step::{BatchLocks, run_batch, single_file_command};
use super::step_result::{self, UnusableReport, Verdict};
use crate::actions::retry_policy;
use crate::config::rules::{Backoff, IngestConfig};
use crate::error::{Error, Result};
use crate::model::task_status::TaskStatus;
use crate::model::words;
use crate::run::context::Context;
use crate::run::runner::CommandReport;
use crate::state::ingest_hash::{Digest, IngestHash};
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
    /// Memories saved while the run was under way that it sent too (in its next batch).
    pub fresh: usize,
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
/// end). Memories saved while it runs (`fresh`, from the watcher) go into the next batch.
/// Stops at the first error that would make a record impossible (a step that cannot
/// start, a state file that cannot be written).
pub fn execute(
    ctx: &Context<'_>,
    config: &IngestConfig,
    plan: &Plan,
    fresh: Option<&FreshSaves>,
    hashes: &mut IngestHash,
    out: &mut Executed,
) -> Result<()> {
    let ran = send_all(ctx, config, plan, fresh, hashes, out);
    // Even a run stopped by an error leaves what it recorded durable.
    let committed = hashes.commit();
    ran.and(committed)
}

fn send_all(
    ctx: &Context<'_>,
    config: &IngestConfig,
    plan: &Plan,
    fresh: Option<&FreshSaves>,
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
    let mut sender = Sender {
        ctx,
        config,
        total,
        // Files done and failed, rate and time left, on a terminal (issue 11: 20,000 files
        // in 313 batches ran 20 s with nothing on screen).
        bar: crate::run::progress::Batches::new(plan.send.len(), total, ctx.progress),
        failed_content: HashSet::new(),
        fresh_keys: HashSet::new(),
        restated: fresh::Restated::default(),
        not_sendable: 0,
        hashes,
        out,
        now,
    };
    let mut queued_from = 0;
    for piece in pieces {
        if let Some(fresh) = fresh {
            sender.send_fresh(fresh, &plan.send[queued_from..])?;
        }
        if let Piece::Batch(range) = &piece {
            queued_from = range.end;
        }
        if sender.stop_if_asked(plan.send.len()) {
            break;
        }
        sender.send(&plan.send, piece, &plan.after_send)?;
    }
    // Saves heard during the last batch go now, not after another debounce and run.
    if let Some(fresh) = fresh.filter(|_| !plan.send.is_empty() && !ctx.stopping()) {
        sender.send_fresh(fresh, &[])?;
        // A signal that came while they went leaves some unsent: the run says it stopped,
        // and what it left, as it does between planned batches.
        if sender.out.stopped.is_none() && sender.left(plan.send.len()) > 0 {
            sender.stop_if_asked(plan.send.len());
        }
    }
    // Removals come after the additions: a renamed memory is searchable under its new
    // name before its old one goes.
    let Sender {
        failed_content,
        hashes,
        out,
        now,
        ..
    } = sender;
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

/// What sends a run's batches keeps between them.
struct Sender<'s, 'c> {
    ctx: &'s Context<'c>,
    config: &'s IngestConfig,
    hashes: &'s mut IngestHash,
    out: &'s mut Executed,
    now: String,
    /// Batches the run has, fresh saves' included.
    total: usize,
    bar: crate::run::progress::Batches,
    /// Content the step failed on in this run: a gone memory with that content was
    /// renamed, and its old path stays in the index until the new one is in.
    failed_content: HashSet<Digest>,
    /// Files failed without being sent (a name too long, a line break).
    not_sendable: usize,
    /// Keys of the fresh saves the run took: a copy among them holds newer content than
    /// the plan read, so its original's batch does not record it.
    fresh_keys: HashSet<String>,
    /// Queued files saved anew during the run.
    restated: fresh::Restated,
}

impl Sender<'_, '_> {
    /// Whether a signal asked memsched to stop: then the run sends nothing more, saying
    /// what it leaves (of `planned` files and the fresh saves it took).
    fn stop_if_asked(&mut self, planned: usize) -> bool {
        if !self.ctx.stopping() {
            return false;
        }
        let left = self.left(planned);
        let out = &mut *self.out;
        out.notes.push(format!(
            "stopped after {} of {}: a signal asked memsched to stop; the rest waits for the next run",
            out.batches,
            words::count(self.total, "batch", "batches")
        ));
        out.stopped = Some((self.total, left));
        true
    }

    /// How many of the `planned` files and the fresh saves taken are not sent yet.
    fn left(&self, planned: usize) -> usize {
        (planned + self.out.fresh).saturating_sub(self.out.sent + self.not_sendable)
    }

    /// Sends, in batches of their own, the memories saved since the last batch that need
    /// it, ahead of the files still `queued`.
    fn send_fresh(&mut self, fresh: &FreshSaves, queued: &[Candidate]) -> Result<()> {
        if self.ctx.stopping() {
            // Left with the watcher's changes for the next run, not taken and unsent.
            return Ok(());
        }
        let heard = fresh::to_send(fresh, self.ctx, self.config, self.hashes, queued);
        self.restated.note(heard.restated);
        let saved = heard.send;
        if saved.is_empty() {
            return Ok(());
        }
        let when = match queued.len() {
            0 => "sent once its last batch was done".to_owned(),
            n => format!(
                "sent ahead of the {} it still had queued",
                words::count(n, "file", "files")
            ),
        };
        self.out.fresh += saved.len();
        self.fresh_keys.extend(saved.iter().map(|c| c.key.clone()));
        let pieces = batches::plan(self.ctx, self.config, &saved);
        self.total += batches::batch_count(&pieces);
        let mut said = 0;
        for piece in pieces {
            if self.ctx.stopping() {
                // Each file is said to be sent only once it is: a signal leaves the rest
                // for the next run, and the run's stop note counts them.
                for candidate in &saved[said..] {
                    self.out.notes.push(format!(
                        "leave {}: saved during this run, not sent: a signal asked memsched to stop; the next run sends it",
                        candidate.shown()
                    ));
                }
                break;
            }
            let upto = match &piece {
                Piece::Batch(range) => range.end,
                Piece::TooLong { index, .. } | Piece::LineBreak { index, .. } => index + 1,
            };
            for candidate in &saved[said..upto] {
                self.out.notes.push(format!(
                    "send {}: saved during this run, {when}",
                    candidate.shown()
                ));
            }
            said = upto;
            self.send(&saved, piece, &[])?;
        }
        Ok(())
    }

    /// `candidate` could not be sent (`why`; `too_long`: its name fits in no batch; else
    /// a line break would split it): a failed task naming why, with no command of its own
    /// (it could not start either); the rest of the run goes on.
    fn not_sent(&mut self, candidate: &Candidate, why: &str, too_long: bool) -> Result<()> {
        let error = format!("not sent: {why}");
        let failed = [(candidate, error.clone())];
        let due = record_tasks(
            self.ctx,
            self.config,
            self.hashes,
            &[],
            &failed,
            &self.now,
            false,
        )?;
        self.out.queued_until(due);
        self.out.unsent += usize::from(too_long);
        self.not_sendable += 1;
        self.out.failed.push((candidate.shown(), error));
        Ok(())
    }

    /// Sends one piece of `files` (or fails it, when it could not be sent), records what
    /// the step did, and the copies (`after_send`) of content it finished.
    fn send(
        &mut self,
        files: &[Candidate],
        piece: Piece,
        after_send: &[(Candidate, String)],
    ) -> Result<()> {
        let (ctx, config, now) = (self.ctx, self.config, self.now.as_str());
        let batch = match piece {
            Piece::Batch(range) => self.restated.apply(&files[range]),
            Piece::TooLong { index, why } => return self.not_sent(&files[index], &why, true),
            Piece::LineBreak { index, why } => return self.not_sent(&files[index], &why, false),
        };
        let batch = &batch[..];
        let out = &mut *self.out;
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

        let (done_keys, failures, gone_keys) = place_verdicts(
            batch,
            verdicts,
            self.hashes,
            now,
            out,
            &mut self.failed_content,
        );
        // Copies of content the step just finished need no run of their own; one saved
        // anew during the run went (or goes) as itself, with its new content. A copy of
        // content its original no longer held when it went is not in the index: the next
        // walk sends it.
        for (copy, original) in after_send {
            if self.restated.changed(original) && done_keys.contains(&original.as_str()) {
                out.notes.push(format!(
                    "not recorded {}: {} changed before its batch, so their old content is not in the index; the next full walk sends it",
                    copy.shown(),
                    crate::model::file_key::path(original).map_or_else(|| original.clone(), |p| crate::model::file_key::display(&p))
                ));
                continue;
            }
            if done_keys.contains(&original.as_str()) && !self.fresh_keys.contains(&copy.key) {
                self.hashes.record(&copy.key, &copy.hash, copy.stat, now);
                out.recorded_only += 1;
            }
        }
        self.hashes.flush()?;
        out.done += done_keys.len();
        out.gone += gone_keys.len();
        self.bar.sent(done_keys.len(), failures.len());
        let closed: Vec<&str> = done_keys.iter().chain(&gone_keys).copied().collect();
        let due = record_tasks(ctx, config, self.hashes, &closed, &failures, now, true)?;
        out.queued_until(due);
        out.failed
            .extend(failures.into_iter().map(|(c, e)| (c.shown(), e)));
        Ok(())
    }
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
    failed_content: &mut HashSet<Digest>,
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
    failed_content: &HashSet<Digest>,
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
    ctx.rules
        .retry
        .as_ref()
        .map_or_else(Backoff::default, |retry| retry.backoff)
}

/// The id of the task for an ingest failure of `key`.
#[must_use]
pub fn task_id(key: &str) -> String {
    format!("ingest:{key}")
}
