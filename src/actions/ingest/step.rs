//! One batch through the ingest step (or its `remove` command): a one-shot run, the
//! names in its arguments, on its stdin or in a list file, and the result read from
//! MEMSCHED_RESULT; or one request line to the resident step and its answer line. Also
//! what a retry task may carry of it (the command for one file).

use std::io::Write;
use std::path::PathBuf;

use serde_json::Value;

use super::plan::Candidate;
use super::step_result::StepResult;
use crate::config::rules::{IngestConfig, PassFiles};
use crate::error::{Error, Result};
use crate::model::action::Action;
use crate::run::context::Context;
use crate::run::resident;
use crate::run::runner::{self, CommandReport, Invocation, Vars};

/// The resident step `argv` (the ingest or the remove command) makes: started in the
/// pipeline home with the steps' environment, holding ingest.lock.
fn resident_spec(ctx: &Context<'_>, config: &IngestConfig, argv: &[String]) -> resident::Spec {
    resident::Spec {
        argv: runner::expand(argv, &Vars::default()),
        cwd: ctx.paths.home.clone(),
        env: ctx.step_env(Action::Ingest, None),
        lock: ctx.paths.action_lock(Action::Ingest.name()),
        idle_exit: config.resident.and_then(|r| r.idle_exit),
        scripts: ctx.judged.scripts(ctx.paths, ctx.rules, argv),
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
    pub(super) fn ingest(ctx: &Context<'_>, config: &IngestConfig) -> BatchLocks {
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
        scripts: ctx.judged.scripts(ctx.paths, ctx.rules, argv),
        item: Some(match batch {
            [one] => one.shown(),
            many => format!("{} files", many.len()),
        }),
    };
    let report = runner::run_judged(&invocation, ctx.judged)?;
    let result = StepResult::read(&result_path, batch.len());
    Ok((report, result))
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
