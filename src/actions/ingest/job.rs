//! Ingest in the job skeleton: load the scan and the state side by side, plan, and the
//! lines and counts its report shows.

use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use super::batches;
use super::execute::{Executed, execute};
use super::hints::WatcherHints;
use super::plan::{Plan, plan};
use super::scan::{Scan, scan};
use crate::config::rules::IngestConfig;
use crate::error::Result;
use crate::model::action::Action;
use crate::model::trigger::Trigger;
use crate::model::words;
use crate::run::context::Context;
use crate::run::job::{self, Job, Ran};
use crate::run::report::{ActionReport, FailedItem, count};
use crate::state::ingest_hash::HeldGuard;
use crate::state::task_queue::TaskQueue;

/// An event run with at most this many changed paths looks at them before loading the
/// state, on the run's own thread: starting a second thread would cost more.
const FEW_CHANGED: usize = 64;

/// The ingest action with its rules and what the watcher handed it.
pub struct IngestJob<'a> {
    pub config: &'a IngestConfig,
    pub hints: &'a WatcherHints,
    /// A person confirmed the removals this run finds (`--confirm-removals`): none is
    /// held back.
    pub confirm_removals: bool,
}

/// What ingest reads before it plans.
pub(crate) struct Loaded<'a> {
    /// The manifest, held for the whole turn.
    hashes: HeldGuard<'a>,
    /// The queue, dropped once planned.
    queue: Option<TaskQueue>,
    scan: Scan,
    /// When loading began, and how long the scan and the state took, for the log.
    started: Instant,
    scan_in: Duration,
    state_in: Duration,
}

impl<'a> Job for IngestJob<'a> {
    const ACTION: Action = Action::Ingest;
    type State = Loaded<'a>;
    type Plan = Plan;
    type Done = Executed;

    fn load(&self, ctx: &Context<'_>, _report: &mut ActionReport) -> Result<Loaded<'a>> {
        let (config, hints) = (self.config, self.hints);
        let started = Instant::now();
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
        let (hashes, queue) = loaded?;
        Ok(Loaded {
            hashes,
            queue: Some(queue),
            scan: scanned?,
            started,
            scan_in,
            state_in,
        })
    }

    fn plan(&self, ctx: &Context<'_>, state: &mut Loaded<'a>) -> Plan {
        let read_in = state.started.elapsed();
        let queue = state.queue.take().expect("a turn plans once");
        let scanned = std::mem::take(&mut state.scan);
        let plan = plan(
            ctx,
            self.config,
            scanned,
            &mut state.hashes,
            &queue,
            self.hints,
            self.confirm_removals,
        );
        drop(queue);
        log::debug!(
            "ingest: scanned {} in {:?}, held {} records in {:?} (side by side), planned in {:?}",
            if plan.changed_only {
                "the changed paths"
            } else {
                "data_dir"
            },
            state.scan_in,
            state.hashes.len(),
            state.state_in,
            state.started.elapsed().saturating_sub(read_in)
        );
        plan
    }

    fn describe(&self, ctx: &Context<'_>, _: &Loaded<'a>, plan: &Plan, report: &mut ActionReport) {
        report.reasons = plan.reasons();
        report.set_found(plan.send.len() + plan.record_only.len() + plan.after_send.len());
        if !plan.deferred.is_empty() {
            // Files still being written are worth another look once they have settled.
            report.set_next_due(ctx.now + self.config.settle);
        }
        report.counts = counts(plan, None);
    }

    fn has_work(plan: &Plan) -> bool {
        plan.has_work()
    }

    fn nothing_text(&self, plan: &Plan) -> String {
        nothing_text(plan, &waiting_text(plan))
    }

    fn would_text(&self, ctx: &Context<'_>, plan: &Plan) -> String {
        would_text(ctx, self.config, plan, &waiting_text(plan))
    }

    fn execute(
        &self,
        ctx: &Context<'_>,
        plan: &Plan,
        state: &mut Loaded<'a>,
    ) -> Result<job::Executed<Executed>> {
        let mut executed = Executed::default();
        let fresh = self.hints.fresh.as_ref();
        let result = execute(
            ctx,
            self.config,
            plan,
            fresh,
            &mut state.hashes,
            &mut executed,
        );
        Ok(job::Executed {
            done: executed,
            stopped_by: result.err(),
        })
    }

    fn record(
        &self,
        _: &Context<'_>,
        plan: &Plan,
        mut executed: Executed,
        report: &mut ActionReport,
    ) -> Ran {
        report.counts = counts(plan, Some(&executed));
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
        report
            .failed_items
            .extend(
                executed
                    .removals_failed
                    .iter()
                    .map(|(item, error)| FailedItem {
                        item: item.clone(),
                        error: format!("removal: {error}"),
                    }),
            );
        report.followup.retry_due = executed.retry_due;
        let failed = executed.failed.len() + executed.removals_failed.len();
        Ran {
            failed,
            acted: true,
            summary: ran_text(plan, &executed, &waiting_text(plan)),
            error: Some(job::step_failed_on(Action::Ingest, failed)),
            interrupted: executed.stopped.is_some(),
        }
    }

    /// Held-back removals need a person: the run fails, saying what to do.
    fn needs_a_person(&self, plan: &Plan) -> Option<String> {
        (!plan.held.is_empty()).then(|| held_text(plan.held.len(), &plan.held_why))
    }

    /// Folds the journal into ingest_hash.json after a walk of all of data_dir (startup,
    /// tick, rescan, `--once`: so the file is never more than a tick behind), or once the
    /// journal has grown large; an event run otherwise leaves the other records alone. A
    /// cron line's run (`--trigger cron`) walks everything every time, so it folds only a
    /// journal older than `tick` (issue 19 item 7: one new file among 100,000 cost a
    /// rewrite of them all, 140 ms, every ten minutes).
    fn finish(
        &self,
        ctx: &Context<'_>,
        state: Loaded<'a>,
        plan: &Plan,
        report: ActionReport,
    ) -> ActionReport {
        let mut hashes = state.hashes;
        let marks = !plan.newly_gone.is_empty() || !plan.complete.is_empty();
        if !ctx.dry_run && marks {
            let now = crate::state::timestamp(ctx.now);
            for key in &plan.newly_gone {
                hashes.mark_gone(key, &now);
            }
            for (key, stat) in &plan.complete {
                hashes.complete_stat(key, *stat);
            }
            if let Err(e) = hashes.flush() {
                hashes.forget();
                return report.fail(&e);
            }
        }
        // The run ends with every line it journaled durable (a compaction below is too).
        if let Err(e) = hashes.commit() {
            hashes.forget();
            return report.fail(&e);
        }
        let walked_all = self.hints.changed.is_none();
        let walk_folds = walked_all
            && (ctx.trigger != Trigger::Cron || hashes.journal_older_than(ctx.rules.tick, ctx.now));
        let due = hashes.has_journal() && (walk_folds || hashes.journal_is_large());
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

    /// What is held may be ahead of what reached disk: the next run reads it again.
    fn abandon(&self, state: Loaded<'a>) {
        state.hashes.forget();
    }
}

/// What a run that held removals back says, and what a person does about it.
fn held_text(held: usize, why: &str) -> String {
    format!(
        "held back {}: {why}; nothing was removed (if they are really gone: memsched --once --confirm-removals)",
        words::count(held, "removal", "removals")
    )
}

/// The line of a run that executed: what it sent, what it recorded without sending.
fn ran_text(plan: &Plan, executed: &Executed, waiting: &str) -> String {
    let failed = executed.failed.len();
    let mut parts = Vec::new();
    if !plan.send.is_empty() {
        // Files saved while the run was under way went in too (issue 19).
        let fresh = match executed.fresh {
            0 => String::new(),
            n => format!(
                " ({} saved during the run)",
                words::count(n, "file", "files")
            ),
        };
        let mut summary = match executed.stopped {
            None => format!(
                "sent {}{fresh} in {}: {} done, {} failed{}",
                words::count(
                    plan.send.len() + executed.fresh - executed.unsent,
                    "file",
                    "files"
                ),
                words::count(executed.batches, "batch", "batches"),
                executed.done,
                failed - executed.unsent,
                batches::unsent_text(executed.unsent),
            ),
            // Issue 18 item 15: a run a signal stopped says so, and what it left.
            Some((total, left)) => format!(
                "stopped by a signal after {} of {}: sent {} of {}{fresh}: {} done, {} failed{}; the other {} sent next run",
                executed.batches,
                words::count(total, "batch", "batches"),
                executed.sent,
                words::count(plan.send.len() + executed.fresh, "file", "files"),
                executed.done,
                failed - executed.unsent,
                batches::unsent_text(executed.unsent),
                words::count(left, "file is", "files are"),
            ),
        };
        if executed.gone > 0 {
            summary.push_str(&format!(
                "; {} gone while the step ran (no task)",
                words::count(executed.gone, "file", "files")
            ));
        }
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
    if !plan.remove.is_empty() {
        let failed = executed.removals_failed.len();
        parts.push(format!(
            "told the remove step {} gone: {} removed, {failed} failed{}",
            words::count(plan.remove.len(), "memory", "memories"),
            executed.removed,
            if failed > 0 {
                " (still pending: tried again next run)"
            } else {
                ""
            }
        ));
    }
    format!("{}{waiting}", parts.join("; "))
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
    if !plan.remove.is_empty() {
        parts.push(format!(
            "would tell the remove step {} gone",
            words::count(plan.remove.len(), "memory", "memories")
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
    // The file just saved is the one a person asks about: name it and its wait.
    let deferred = match plan.deferred.as_slice() {
        [] => String::new(),
        [(name, why)] => format!("still being written ({name}: {why})"),
        [(name, why), ..] => format!("still being written (the first, {name}: {why})"),
    };
    let parts: Vec<String> = [
        (plan.deferred.len(), deferred.as_str()),
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

/// Counts for the report, in the order a reader wants them.
#[must_use]
fn counts(plan: &Plan, executed: Option<&Executed>) -> Map<String, Value> {
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
    put("removed", plan.gone());
    put("removals_held", plan.held.len());
    put("unreadable", plan.unreadable.len());
    if let Some(e) = executed {
        put(count::DONE, e.done);
        put(count::FAILED, e.failed.len());
        put("recorded_only", e.recorded_only);
        put(count::BATCHES, e.batches);
        put("fresh", e.fresh);
        put(count::REMOVALS_DONE, e.removed);
        put(count::REMOVALS_FAILED, e.removals_failed.len());
    }
    c
}
