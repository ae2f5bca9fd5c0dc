//! What the ingest step reports through `MEMSCHED_RESULT`:
//! `{"done": [path, ...], "failed": [{"path": path, "error": text}, ...]}`.
//! Paths may be absolute, relative to data_dir, or relative to the pipeline home.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use super::plan::Candidate;
use crate::error::json_message;
use crate::model::file_key;
use crate::run::context::Context;
use crate::run::runner::CommandReport;

#[derive(Debug, Default, Deserialize)]
pub(super) struct Reported {
    #[serde(default)]
    done: Vec<String>,
    #[serde(default)]
    failed: Vec<ReportedFailure>,
    /// Some entry named a path JSON cannot spell (a lone surrogate, as Python writes a
    /// name that is not UTF-8): it was read as U+FFFD, so it names no file of the batch,
    /// and that file follows the exit status. The rest of the report stands.
    #[serde(skip)]
    repaired: bool,
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
            Ok(bytes) => Self::parse(&bytes),
        }
    }

    /// The report in `bytes`; one with lone surrogates is read with them replaced.
    pub(super) fn parse(bytes: &[u8]) -> StepResult {
        let first = serde_json::from_slice::<Reported>(bytes);
        let repaired = first
            .is_err()
            .then(|| without_lone_surrogates(bytes))
            .flatten()
            .and_then(|fixed| serde_json::from_slice::<Reported>(&fixed).ok());
        if let Some(mut r) = repaired {
            r.repaired = true;
            return StepResult::Read(r);
        }
        match first {
            Ok(r) => StepResult::Read(r),
            Err(e) => StepResult::Malformed(format!(
                "does not parse at line {} column {}: {}; \
                     nothing of this batch was recorded, it will be sent again",
                e.line(),
                e.column(),
                json_message(&e)
            )),
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
        if reported.repaired {
            notes.push(
                "the step's report named a path JSON cannot spell (a lone surrogate): that \
                 entry was ignored, and its file follows the exit status"
                    .to_owned(),
            );
        }
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

/// `bytes` with every `\uD800`–`\uDFFF` escape that is not half of a pair replaced by
/// `\uFFFD`; `None` when there is none.
fn without_lone_surrogates(bytes: &[u8]) -> Option<Vec<u8>> {
    let surrogate = |at: usize| -> Option<u16> {
        let hex = bytes.get(at..at + 6)?;
        if hex[0] != b'\\' || hex[1] != b'u' {
            return None;
        }
        let n = u16::from_str_radix(std::str::from_utf8(&hex[2..]).ok()?, 16).ok()?;
        (0xD800..=0xDFFF).contains(&n).then_some(n)
    };
    let mut out = Vec::with_capacity(bytes.len());
    let mut changed = false;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        match surrogate(i) {
            Some(0xD800..=0xDBFF) if surrogate(i + 6).is_some_and(|l| l >= 0xDC00) => {
                out.extend_from_slice(&bytes[i..i + 12]);
                i += 12;
            }
            Some(_) => {
                out.extend_from_slice(b"\\ufffd");
                changed = true;
                i += 6;
            }
            // Any other escape, its escaped character included, stays as it is.
            None => {
                out.extend_from_slice(&bytes[i..(i + 2).min(bytes.len())]);
                i += 2;
            }
        }
    }
    changed.then_some(out)
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn read(text: &str) -> Reported {
        match StepResult::parse(text.as_bytes()) {
            StepResult::Read(r) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_lone_surrogate_costs_only_its_own_entry() {
        let r = read(
            r#"{"done": ["a.txt", "b\\udce9.txt"], "failed": [{"path": "caf\udce9.txt", "error": "x"}]}"#,
        );
        assert!(r.repaired);
        assert_eq!(
            r.done,
            ["a.txt", "b\\udce9.txt"],
            "an escaped backslash is no escape"
        );
        assert_eq!(r.failed[0].path, "caf\u{fffd}.txt");
        let pair = read(r#"{"done": ["\ud83d\ude00.txt"]}"#);
        assert!(!pair.repaired, "a surrogate pair is fine");
        assert_eq!(pair.done, ["\u{1f600}.txt"]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// MEMSCHED_RESULT is whatever the step wrote: any bytes give a report or a
        /// reason, never a panic.
        #[test]
        fn any_bytes_read_as_a_report_or_a_reason(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = StepResult::parse(&bytes);
        }

        #[test]
        fn any_json_text_with_escapes_reads_or_explains(text in r#"\{"done": \["([a-z]|\\u[dD][89aAbBcCdDeEfF][0-9a-f]{2}|\\\\)*"\]\}"#) {
            let _ = StepResult::parse(text.as_bytes());
        }
    }
}
