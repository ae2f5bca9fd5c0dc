//! What the ingest step reports through `MEMSCHED_RESULT`:
//! `{"done": [path, ...], "failed": [{"path": path, "error": text}, ...]}`.
//! Paths may be absolute, relative to data_dir, or relative to the pipeline home.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use super::plan::Candidate;
use crate::actions::Context;
use crate::error::json_message;
use crate::file_key;
use crate::runner::CommandReport;

#[derive(Debug, Default, Deserialize)]
pub(super) struct Reported {
    #[serde(default)]
    done: Vec<String>,
    #[serde(default)]
    failed: Vec<ReportedFailure>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ReportedFailure {
    path: String,
    #[serde(default)]
    error: Option<String>,
}

/// Where each spelling of a batch file's path sits in the batch.
pub(super) type BatchIndex = HashMap<String, Spelling>;

/// What one spelling of a path names in the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Spelling {
    /// Exactly this file of the batch.
    One(usize),
    /// Two files of the batch (say `Data/x.txt` from the home and the key of
    /// `Data/Data/x.txt`): a report that uses it cannot be trusted for either.
    Ambiguous(usize, usize),
}

/// What became of one file of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Verdict {
    Done,
    Failed(String),
}

/// Why the step's report cannot be used; the whole batch is sent again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct UnusableReport(pub(super) String);

/// The step's report: absent, read, or unreadable (with why).
#[derive(Debug)]
pub(super) enum StepResult {
    Absent,
    Read(Reported),
    Malformed(String),
}

impl StepResult {
    pub(super) fn read(path: &Path) -> StepResult {
        match std::fs::read(path) {
            Err(_) => StepResult::Absent,
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(r) => StepResult::Read(r),
                Err(e) => StepResult::Malformed(format!(
                    "does not parse at line {} column {}: {}; \
                     nothing of this batch was recorded, it will be sent again",
                    e.line(),
                    e.column(),
                    json_message(&e)
                )),
            },
        }
    }

    /// For each file of the batch, its verdict. A file the report does not mention counts
    /// as done when the step exited 0, failed otherwise.
    pub(super) fn verdicts(
        &self,
        names: &[String],
        index: &BatchIndex,
        report: &CommandReport,
        notes: &mut Vec<String>,
    ) -> Result<Vec<Verdict>, UnusableReport> {
        let unlisted = if report.success() {
            Verdict::Done
        } else {
            Verdict::Failed(report.failure_text())
        };
        let mut verdicts = vec![unlisted; names.len()];
        let reported = match self {
            StepResult::Absent => return Ok(verdicts),
            StepResult::Malformed(why) => return Err(UnusableReport(why.clone())),
            StepResult::Read(r) => r,
        };
        let mut find = |path: &str| match index.get(path) {
            Some(Spelling::One(i)) => Ok(Some(*i)),
            Some(Spelling::Ambiguous(a, b)) => Err(UnusableReport(format!(
                "names {path:?}, which could be {} or {} of its batch; nothing of this batch \
                 was recorded, it will be sent again (report absolute paths)",
                names[*a], names[*b]
            ))),
            None => {
                notes.push(format!(
                    "the step reported {path:?}, which was not in its batch"
                ));
                Ok(None)
            }
        };
        for path in &reported.done {
            if let Some(i) = find(path)? {
                verdicts[i] = Verdict::Done;
            }
        }
        for failure in &reported.failed {
            if let Some(i) = find(&failure.path)? {
                let error = failure
                    .error
                    .clone()
                    .unwrap_or_else(|| "reported failed by the step".to_owned());
                verdicts[i] = Verdict::Failed(error);
            }
        }
        Ok(verdicts)
    }
}

/// Every spelling under which the step may report a file of the batch.
pub(super) fn index_batch(ctx: &Context<'_>, batch: &[Candidate]) -> BatchIndex {
    let mut index = BatchIndex::new();
    for (i, c) in batch.iter().enumerate() {
        let mut spellings = vec![
            c.abs.to_string_lossy().into_owned(),
            c.key.clone(),
            file_key::display(&c.rel),
        ];
        if let Ok(from_home) = c.abs.strip_prefix(&ctx.paths.home) {
            spellings.push(from_home.to_string_lossy().into_owned());
        }
        for spelling in spellings {
            index
                .entry(spelling)
                .and_modify(|s| {
                    if let Spelling::One(j) = *s
                        && j != i
                    {
                        *s = Spelling::Ambiguous(j, i);
                    }
                })
                .or_insert(Spelling::One(i));
        }
    }
    index
}
