//! The ingest step's part of retry (issue 19): the files of failed `ingest` tasks that
//! fall due together go to the step as an ingest run sends them (in argv, on stdin or in
//! a list file, split by `batch_size` and the argument limit; or as one resident batch),
//! instead of one run of the step per task: 40 timed-out files were 40 step starts and
//! 40 index rewrites. What the step reports is told per file, for each file's own task.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::batches::{self, Piece};
use super::execute::task_id;
use super::plan::Candidate;
use super::step::{BatchLocks, run_batch, single_file_command};
use super::step_result::{self, UnusableReport, Verdict};
use crate::config::rules::IngestConfig;
use crate::error::Error;
use crate::model::action::Action;
use crate::model::file_key;
use crate::run::context::Context;
use crate::run::runner::CommandReport;
use crate::state::ingest_hash::Digest;
use crate::state::stat::Stat;

/// One run of the step on some of the retried files, or files that were never sent.
#[derive(Debug)]
pub struct RetriedRun {
    /// The step's run (`None`: nothing ran, the files could not be sent or it could not
    /// start).
    pub report: Option<CommandReport>,
    /// Whether the files went to the step (false: their names fit in no batch).
    pub sent: bool,
    /// Each file of the run, as its index among the files given, and its error (`None`:
    /// done).
    pub results: Vec<(usize, Option<String>)>,
}

/// Whether the task `id` of `file` is one ingest wrote for it and retry may send with
/// others: its id is ingest's for that file, and it has no command of its own or exactly
/// the one ingest writes for it under these rules (any other command is run as written).
#[must_use]
pub fn batchable(
    ctx: &Context<'_>,
    config: &IngestConfig,
    id: &str,
    file: &str,
    own_command: Option<&[String]>,
) -> bool {
    if id != task_id(file) {
        return false;
    }
    let Some(own) = own_command else {
        return true;
    };
    let Some(candidate) = candidate(ctx, file) else {
        return false;
    };
    let written = single_file_command(config, &candidate);
    let own = Value::Array(own.iter().map(|a| Value::from(a.as_str())).collect());
    written.is_some_and(|w| w == own)
}

/// A file of a task as the batch code takes it. Retry sends what is on disk now, so the
/// stat and the hash (which only an ingest run records) play no part.
fn candidate(ctx: &Context<'_>, key: &str) -> Option<Candidate> {
    let rel = file_key::path(key)?;
    Some(Candidate {
        key: key.to_owned(),
        abs: ctx.paths.data_dir.join(&rel),
        rel,
        stat: Stat::default(),
        hash: Digest([0; 32]),
    })
}

/// Sends the files `keys` (of tasks [`batchable`] judged, checked inside data_dir) to the
/// ingest step, holding `lock` (retry.lock) and handing on `step_lock` (ingest.lock;
/// `None` for a resident step, which holds it itself), each run at most `timeout`.
/// Stops before a run once a signal came: the files of the runs not made are in no
/// returned run.
#[must_use]
pub fn retry(
    ctx: &Context<'_>,
    config: &IngestConfig,
    keys: &[String],
    lock: PathBuf,
    step_lock: Option<PathBuf>,
    timeout: Duration,
) -> Vec<RetriedRun> {
    let locks = BatchLocks {
        lock,
        step_lock,
        timeout,
        action: Action::Retry,
    };
    let mut runs = Vec::new();
    // A key that spells no name was refused before it came here; none is dropped.
    let (known, files): (Vec<usize>, Vec<Candidate>) = keys
        .iter()
        .enumerate()
        .filter_map(|(i, key)| Some((i, candidate(ctx, key)?)))
        .unzip();
    for piece in batches::plan(ctx, config, &files) {
        let range = match piece {
            Piece::Batch(range) => range,
            Piece::TooLong { index, why } | Piece::LineBreak { index, why } => {
                runs.push(RetriedRun {
                    report: None,
                    sent: false,
                    results: vec![(known[index], Some(format!("not sent: {why}")))],
                });
                continue;
            }
        };
        if ctx.stopping() {
            break;
        }
        let batch = &files[range.clone()];
        let indices = &known[range];
        runs.push(run_one(ctx, config, batch, indices, &locks));
    }
    runs
}

/// One run of the step on `batch` (the files at `indices`), every file's result read
/// from its report; a step that could not start, or a report that cannot be used, fails
/// every file of the batch saying why.
fn run_one(
    ctx: &Context<'_>,
    config: &IngestConfig,
    batch: &[Candidate],
    indices: &[usize],
    locks: &BatchLocks,
) -> RetriedRun {
    let all_failed = |report: Option<CommandReport>, why: String| RetriedRun {
        report,
        sent: true,
        results: indices.iter().map(|&i| (i, Some(why.clone()))).collect(),
    };
    let (report, result) = match run_batch(ctx, config, &config.command.argv, "files", batch, locks)
    {
        Ok(ran) => ran,
        Err(e) => return all_failed(None, e.chain()),
    };
    let by_path = step_result::index_batch(ctx, batch);
    let names: Vec<String> = batch.iter().map(Candidate::shown).collect();
    let mut notes = Vec::new();
    match result.verdicts(&names, &by_path, &report, &mut notes) {
        Ok(verdicts) => RetriedRun {
            results: indices
                .iter()
                .zip(verdicts)
                .map(|(&i, verdict)| match verdict {
                    Verdict::Done => (i, None),
                    Verdict::Failed(error) => (i, Some(error)),
                })
                .collect(),
            report: Some(report),
            sent: true,
        },
        Err(UnusableReport(msg)) => all_failed(Some(report), Error::StepReport { msg }.chain()),
    }
}
