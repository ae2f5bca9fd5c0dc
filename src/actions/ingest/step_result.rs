//! What the ingest step reports through `MEMSCHED_RESULT`:
//! `{"done": [path, ...], "failed": [{"path": path, "error": text}, ...]}`.
//! Paths may be absolute, relative to data_dir, or relative to the pipeline home.

use std::cell::OnceCell;
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

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
    /// A resident step's answer: it has no exit status, so when an entry could not be
    /// read (`repaired`), the files it names nowhere fail rather than pass.
    #[serde(skip)]
    answer: bool,
}

#[derive(Debug, Deserialize)]
pub(super) struct ReportedFailure {
    path: String,
    #[serde(default)]
    error: Option<String>,
}

/// Where the step's report may point in the batch: every spelling memsched knows of each
/// file, and, for any other spelling, each file's absolute path lexically normal and
/// resolved (issue 18 item 5: `./x.txt`, `Data//x.txt`, `sub/../x.txt`, a trailing `/`
/// or the real path of a home reached through a link all name x.txt, and took a failure
/// for a success when they were not recognised).
#[derive(Debug)]
pub(super) struct BatchIndex {
    spellings: HashMap<String, Spelling>,
    normal: HashMap<PathBuf, Spelling>,
    /// Each file's folder resolved (links followed) joined with its name; made when a
    /// spelling first needs it.
    real: OnceCell<HashMap<PathBuf, Spelling>>,
    abs: Vec<PathBuf>,
    home: PathBuf,
    data_dir: PathBuf,
}

/// What one spelling of a path names in the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Spelling {
    /// Exactly this file of the batch.
    One(usize),
    /// Two files of the batch (say `Data/x.txt` from the home and the key of
    /// `Data/Data/x.txt`): a report that uses it cannot be trusted for either.
    Ambiguous(usize, usize),
}

impl Spelling {
    /// `self` once `i` answers to the same spelling too.
    fn with(self, i: usize) -> Spelling {
        match self {
            Spelling::One(j) if j != i => Spelling::Ambiguous(j, i),
            other => other,
        }
    }
}

fn insert<K: std::hash::Hash + Eq>(map: &mut HashMap<K, Spelling>, key: K, i: usize) {
    map.entry(key)
        .and_modify(|s| *s = s.with(i))
        .or_insert(Spelling::One(i));
}

impl BatchIndex {
    /// The file of the batch `path` names, if any.
    fn find(&self, path: &str) -> Option<Spelling> {
        if let Some(s) = self.spellings.get(path) {
            return Some(*s);
        }
        let given = Path::new(path);
        let bases: Vec<PathBuf> = if given.is_absolute() {
            vec![given.to_path_buf()]
        } else {
            vec![self.data_dir.join(given), self.home.join(given)]
        };
        let pick = |map: &HashMap<PathBuf, Spelling>, keys: &[Option<PathBuf>]| {
            keys.iter()
                .flatten()
                .filter_map(|k| map.get(k).copied())
                .reduce(|a, b| match b {
                    Spelling::One(i) => a.with(i),
                    ambiguous @ Spelling::Ambiguous(..) => ambiguous,
                })
        };
        let normal: Vec<Option<PathBuf>> = bases.iter().map(|b| Some(normalise(b))).collect();
        pick(&self.normal, &normal).or_else(|| {
            let real = self.real.get_or_init(|| {
                let mut map = HashMap::new();
                for (i, abs) in self.abs.iter().enumerate() {
                    if let Some(r) = resolved(abs) {
                        insert(&mut map, r, i);
                    }
                }
                map
            });
            let keys: Vec<Option<PathBuf>> = normal.iter().flatten().map(|n| resolved(n)).collect();
            pick(real, &keys)
        })
    }
}

/// `path` with `.`, repeated and trailing `/` and `name/..` taken out, as text alone.
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push(c);
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// `path`'s folder with every link resolved, joined with its name (which may be gone:
/// the remove step reports files that are).
fn resolved(path: &Path) -> Option<PathBuf> {
    let name = path.file_name()?;
    Some(path.parent()?.canonicalize().ok()?.join(name))
}

/// What became of one file of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Verdict {
    Done,
    Failed(String),
}

/// "4.0 MiB": a size for a message.
fn bytes_text(n: u64) -> String {
    let (whole, tenths) = (n >> 20, ((n & ((1 << 20) - 1)) * 10) >> 20);
    format!("{whole}.{tenths} MiB")
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
    /// A resident step gave no answer (it timed out or died): every file failed, why.
    Unanswered(String),
}

/// What a report may hold for a batch of `files` files: 4 MiB, plus 8 KiB a file (room
/// for the longest path and an error line each), 64 MiB at most. A report past it is
/// unusable, and only that much plus one byte of it is ever read (issue 21 item 8: a
/// 300 MB report cost memsched 311 MB).
#[must_use]
pub(super) fn report_limit(files: usize) -> u64 {
    const BASE: u64 = 4 << 20;
    const PER_FILE: u64 = 8 << 10;
    const MOST: u64 = 64 << 20;
    (BASE + PER_FILE.saturating_mul(files as u64)).min(MOST)
}

impl StepResult {
    /// The report at `path` (written by the step for a batch of `files` files): never
    /// through a link, never from anything but a regular file, never more than
    /// [`report_limit`].
    pub(super) fn read(path: &Path, files: usize) -> StepResult {
        use std::io::Read;
        let limit = report_limit(files);
        let opened =
            crate::os::regular_file::open(path, crate::os::regular_file::options().read(true));
        let mut file = match opened {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return StepResult::Absent,
            Err(e) => {
                return StepResult::Malformed(format!(
                    "cannot be read ({e}); nothing of this batch was recorded, it will be sent again"
                ));
            }
            Ok(file) => file,
        };
        let mut bytes = Vec::new();
        if let Err(e) = (&mut file).take(limit + 1).read_to_end(&mut bytes) {
            return StepResult::Malformed(format!(
                "cannot be read ({e}); nothing of this batch was recorded, it will be sent again"
            ));
        }
        if bytes.len() as u64 > limit {
            return StepResult::Malformed(format!(
                "is larger than 4 MiB plus 8 KiB for each file of its batch ({} here): \
                 nothing of this batch was recorded, it will be sent again",
                bytes_text(limit)
            ));
        }
        Self::parse(&bytes)
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

    /// A resident step's answer line, read as a report is.
    pub(super) fn answer(line: &[u8]) -> StepResult {
        match Self::parse(line) {
            StepResult::Read(mut r) => {
                r.answer = true;
                StepResult::Read(r)
            }
            other => other,
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
        let unlisted = match self {
            StepResult::Read(r) if r.answer && r.repaired => Verdict::Failed(
                "the answer named a path JSON cannot spell (a lone surrogate), so the files it names nowhere are taken as failed"
                    .to_owned(),
            ),
            _ => unlisted,
        };
        let mut verdicts = vec![unlisted; names.len()];
        let reported = match self {
            StepResult::Absent => return Ok(verdicts),
            StepResult::Malformed(why) => return Err(UnusableReport(why.clone())),
            StepResult::Unanswered(why) => {
                return Ok(vec![Verdict::Failed(why.clone()); names.len()]);
            }
            StepResult::Read(r) => r,
        };
        if reported.repaired {
            notes.push(
                "the step's report named a path JSON cannot spell (a lone surrogate): that \
                 entry was ignored, and its file follows the exit status"
                    .to_owned(),
            );
        }
        let find = |path: &str| match index.find(path) {
            Some(Spelling::One(i)) => Ok(Some(i)),
            Some(Spelling::Ambiguous(a, b)) => Err(UnusableReport(format!(
                "names {path:?}, which could be {} or {} of its batch; nothing of this batch \
                 was recorded, it will be sent again (report absolute paths)",
                names[a], names[b]
            ))),
            // An entry JSON could not spell was read with U+FFFD: it names a file of the
            // batch that follows the exit status (noted above).
            None if reported.repaired && path.contains('\u{fffd}') => Ok(None),
            None => Err(UnusableReport(format!(
                "names {path:?}, which is no file of its batch (reported paths are absolute, \
                 relative to data_dir or relative to the home, and name a file the step was \
                 given); nothing of this batch was recorded, it will be sent again"
            ))),
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
    let files: Vec<(&Path, &str, &Path)> = batch
        .iter()
        .map(|c| (c.abs.as_path(), c.key.as_str(), c.rel.as_path()))
        .collect();
    BatchIndex::new(&ctx.paths.home, &ctx.paths.data_dir, &files)
}

impl BatchIndex {
    /// The index of files given as (absolute path, key, path relative to data_dir).
    fn new(home: &Path, data_dir: &Path, files: &[(&Path, &str, &Path)]) -> BatchIndex {
        let mut spellings = HashMap::new();
        let mut normal = HashMap::new();
        for (i, (abs, key, rel)) in files.iter().enumerate() {
            let mut known = vec![
                abs.to_string_lossy().into_owned(),
                (*key).to_owned(),
                file_key::display(rel),
            ];
            if let Ok(from_home) = abs.strip_prefix(home) {
                known.push(from_home.to_string_lossy().into_owned());
            }
            for spelling in known {
                insert(&mut spellings, spelling, i);
            }
            insert(&mut normal, normalise(abs), i);
        }
        BatchIndex {
            spellings,
            normal,
            real: OnceCell::new(),
            abs: files.iter().map(|(abs, _, _)| abs.to_path_buf()).collect(),
            home: home.to_path_buf(),
            data_dir: data_dir.to_path_buf(),
        }
    }
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

    /// Issue 18 item 5: every spelling of a batch file is that file; a path that names
    /// no file of the batch is no file, whatever it looks like.
    #[test]
    fn spellings_of_a_batch_file_are_recognised_and_others_are_not() {
        let outer = tempfile::tempdir().unwrap();
        let real_home = outer.path().join("real");
        std::fs::create_dir_all(real_home.join("Data/sub")).unwrap();
        std::fs::write(real_home.join("Data/x.txt"), "x").unwrap();
        std::fs::write(real_home.join("Data/sub/y.txt"), "y").unwrap();
        let home = outer.path().join("link");
        std::os::unix::fs::symlink(&real_home, &home).unwrap();
        let data = home.join("Data");
        let x_txt = data.join("x.txt");
        let y_txt = data.join("sub/y.txt");
        let index = BatchIndex::new(
            &home,
            &data,
            &[
                (&x_txt, "x.txt", Path::new("x.txt")),
                (&y_txt, "sub/y.txt", Path::new("sub/y.txt")),
            ],
        );
        let link = home.to_str().unwrap();
        let real = real_home.to_str().unwrap();
        let table: Vec<(String, Option<usize>)> = vec![
            ("x.txt".into(), Some(0)),
            ("./x.txt".into(), Some(0)),
            ("x.txt/".into(), Some(0)),
            ("Data//x.txt".into(), Some(0)),
            ("./Data/x.txt".into(), Some(0)),
            ("sub/../x.txt".into(), Some(0)),
            ("Data/sub/../x.txt".into(), Some(0)),
            (format!("{link}//Data/x.txt"), Some(0)),
            (format!("{link}/Data/x.txt/"), Some(0)),
            (format!("{link}/Data/./x.txt"), Some(0)),
            (format!("{link}/Data/sub/../x.txt"), Some(0)),
            (format!("{real}/Data/x.txt"), Some(0)),
            (format!("{real}/Data/sub/y.txt"), Some(1)),
            ("sub//y.txt".into(), Some(1)),
            ("z.txt".into(), None),
            ("../x.txt".into(), None),
            ("Data/../../x.txt".into(), None),
            ("/etc/passwd".into(), None),
            (format!("{real}/x.txt"), None),
            (String::new(), None),
        ];
        for (spelling, want) in table {
            let got = index.find(&spelling).map(|s| match s {
                Spelling::One(i) => i,
                Spelling::Ambiguous(..) => panic!("{spelling}: ambiguous"),
            });
            assert_eq!(got, want, "{spelling:?}");
        }
    }

    #[test]
    fn an_answer_with_an_entry_json_cannot_spell_fails_the_files_it_does_not_name() {
        let home = Path::new("/h");
        let (x, odd) = (Path::new("/h/Data/x.txt"), Path::new("/h/Data/odd.txt"));
        let index = BatchIndex::new(
            home,
            Path::new("/h/Data"),
            &[
                (x, "x.txt", Path::new("x.txt")),
                (odd, "odd.txt", Path::new("odd.txt")),
            ],
        );
        let report = CommandReport {
            exit_code: Some(0),
            ..CommandReport::default()
        };
        let names = ["x.txt".to_owned(), "odd.txt".to_owned()];
        let line =
            br#"{"id": 1, "done": ["x.txt"], "failed": [{"path": "caf\udce9.txt", "error": "e"}]}"#;
        let verdicts = StepResult::answer(line)
            .verdicts(&names, &index, &report, &mut Vec::new())
            .unwrap();
        assert_eq!(verdicts[0], Verdict::Done);
        assert!(matches!(&verdicts[1], Verdict::Failed(why) if why.contains("cannot spell")));
        // A one-shot report that exited 0 leaves the unnamed file to its exit status.
        let verdicts = StepResult::parse(line)
            .verdicts(&names, &index, &report, &mut Vec::new())
            .unwrap();
        assert_eq!(verdicts[1], Verdict::Done);
    }

    #[test]
    fn a_report_entry_naming_no_batch_file_makes_the_report_unusable() {
        let home = Path::new("/h");
        let x = Path::new("/h/Data/x.txt");
        let index = BatchIndex::new(
            home,
            Path::new("/h/Data"),
            &[(x, "x.txt", Path::new("x.txt"))],
        );
        let report = CommandReport::default();
        let mut notes = Vec::new();
        let bad = StepResult::parse(br#"{"failed": [{"path": "y.txt", "error": "e"}]}"#);
        let err = bad
            .verdicts(&["x.txt".into()], &index, &report, &mut notes)
            .unwrap_err();
        assert!(err.0.contains("no file of its batch"), "{err:?}");
        let good = StepResult::parse(br#"{"failed": [{"path": "./x.txt", "error": "e"}]}"#);
        let verdicts = good
            .verdicts(&["x.txt".into()], &index, &report, &mut notes)
            .unwrap();
        assert_eq!(verdicts, [Verdict::Failed("e".into())]);
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
