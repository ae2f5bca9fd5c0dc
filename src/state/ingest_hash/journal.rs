//! The journal beside ingest_hash.json (`ingest_hash.json.journal`): one JSON line per file
//! recorded since the last compaction, appended after each batch and made durable at most
//! every quarter second and before the run ends, so recording
//! one file costs one short line, not a rewrite of every record. Compaction folds it into
//! ingest_hash.json (atomic replace) and removes it. A line cut short by a crash has no
//! newline and is ignored on load, and cut off before the next append.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::os::regular_file;
use serde::{Deserialize, Serialize};

/// One line of the journal: what happened to one record.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub(super) enum Entry {
    /// The file was recorded as ingested (a gone mark it had is cleared).
    Recorded(Line),
    /// memsched found the file gone: its removal is pending.
    Gone(Gone),
    /// The removal was confirmed (or forgotten by hand): the record is dropped.
    Removed(Removed),
    /// The index may no longer hold the record's content (a removal was sent, or a send
    /// of newer content failed).
    Stale(Stale),
    /// The first line: which ingest_hash.json the lines after it apply to.
    Stamp(Stamp),
}

/// A record marked as no proof of what is indexed.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Stale {
    pub key: String,
    pub stale_at: String,
}

/// The journal's first line, `{"manifest": {"inode": …, "size": …, "mtime_ns": "…"}}`
/// (`null`: there was no ingest_hash.json). A journal whose stamp names another file
/// than the one there now is older than it: the file was replaced since (by a script under
/// `ingest.lock`, a restore, a compaction that crashed before removing the journal) and
/// wins, so the journal's lines are dropped (issue 18 item 10). A journal without a stamp
/// (older memsched) is replayed as before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Stamp {
    pub manifest: Option<Identity>,
    /// When the journal was started: a cron run folds one younger than `tick` only when it
    /// is large (issue 19 item 7). Absent from older journals, which fold as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
}

/// Which ingest_hash.json: an atomic replace makes a new inode, an edit in place a new
/// size or mtime. No device: a home copied or restored elsewhere keeps its journal if
/// nothing else changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Identity {
    pub inode: u64,
    pub size: u64,
    #[serde(with = "digits")]
    pub mtime_ns: i64,
}

/// The stamp line (with its newline) for a journal applying to `manifest`, started `since`.
pub(super) fn stamp_line(manifest: Option<Identity>, since: &str) -> Vec<u8> {
    let stamp = Stamp {
        manifest,
        since: Some(since.to_owned()),
    };
    let mut out = serde_json::to_vec(&Entry::Stamp(stamp)).expect("a stamp always serialises");
    out.push(b'\n');
    out
}

/// A record marked as a pending removal.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Gone {
    pub key: String,
    pub gone_at: String,
}

/// A record dropped.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Removed {
    pub key: String,
    pub removed_at: String,
}

/// A file recorded as ingested.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Line {
    pub key: String,
    pub hash: String,
    pub size: u64,
    /// A string of digits, as in ingest_hash.json (exact through jq); a number is read too.
    #[serde(with = "digits")]
    pub mtime_ns: i64,
    pub inode: u64,
    /// Written as `mtime_ns` is; absent from lines older memsched wrote.
    #[serde(default, with = "some_digits", skip_serializing_if = "Option::is_none")]
    pub ctime_ns: Option<i64>,
    pub ingested_at: String,
}

/// An optional integer written as a string of digits, read from either form.
mod some_digits {
    use serde::{Deserializer, Serializer};

    // serde's `with` hands the field by reference.
    #[allow(clippy::ref_option)]
    pub(super) fn serialize<S: Serializer>(n: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
        match n {
            Some(n) => super::digits::serialize(n, s),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        super::digits::deserialize(d).map(Some)
    }
}

/// An integer written as a string of digits, read from either form.
mod digits {
    use serde::{Deserialize, Deserializer, Serializer};
    use serde_json::Value;

    // serde's `with` hands the field by reference.
    #[allow(clippy::trivially_copy_pass_by_ref)]
    pub(super) fn serialize<S: Serializer>(n: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&n.to_string())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        let value = Value::deserialize(d)?;
        crate::state::exact_integer(&value)
            .ok_or_else(|| serde::de::Error::custom(format!("not an integer: {value}")))
    }
}

/// Which file a path named when it was last read or written: a replaced file (a new
/// inode) or a shorter one is another file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FileId {
    pub dev: u64,
    pub ino: u64,
}

/// The journal's name beside `ingest_hash`.
pub(super) fn path_for(ingest_hash: &Path) -> PathBuf {
    let mut name = ingest_hash.file_name().unwrap_or_default().to_owned();
    name.push(".journal");
    ingest_hash.with_file_name(name)
}

/// What a read of the journal from some offset found.
#[derive(Debug, Default)]
pub(super) struct Tail {
    pub lines: Vec<Entry>,
    pub id: Option<FileId>,
    /// Where the last whole line ends: the next read, or append, starts here.
    pub end: u64,
    /// Whole lines that did not parse (skipped).
    pub bad: usize,
}

/// Reads the whole lines from `from` on; a missing journal is empty.
pub(super) fn read(path: &Path, from: u64) -> std::io::Result<Tail> {
    let mut file = match open_read(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Tail::default()),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    let mut tail = Tail {
        id: Some(FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        }),
        end: from,
        ..Tail::default()
    };
    file.seek(SeekFrom::Start(from))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let whole = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    for line in bytes[..whole].split(|b| *b == b'\n') {
        if line.is_empty() {
            continue;
        }
        match serde_json::from_slice::<Entry>(line) {
            Ok(l) => tail.lines.push(l),
            Err(_) => tail.bad += 1,
        }
    }
    tail.end = from + whole as u64;
    Ok(tail)
}

fn open_read(path: &Path) -> std::io::Result<File> {
    regular_file::open(path, regular_file::options().read(true))
}

/// How often appended lines are made durable at most: an `fdatasync` per batch cost a
/// first run of 200,000 files 14 ms a batch, 3,125 times (issue 18 item 16). Lines still
/// in the page cache survive a crash of memsched; only a crash of the machine within
/// this slice loses them, and their files are sent again (the index is keyed by content).
pub(super) const COMMIT_EVERY: Duration = Duration::from_millis(250);

/// Whether lines were appended since the journal was last made durable, and when it was
/// (`None`: not yet by this process, so the first append is made durable at once).
#[derive(Debug, Default)]
pub(super) struct Commits {
    unsynced: bool,
    last: Option<Instant>,
}

impl Commits {
    /// Lines were appended; true when the slice is over and they should be made durable.
    pub(super) fn appended(&mut self) -> bool {
        self.unsynced = true;
        self.last.is_none_or(|at| at.elapsed() >= COMMIT_EVERY)
    }

    /// Whether some appended lines are not yet durable.
    pub(super) fn pending(&self) -> bool {
        self.unsynced
    }

    pub(super) fn done(&mut self) {
        self.unsynced = false;
        self.last = Some(Instant::now());
    }
}

/// Makes what was appended to the journal durable (`fdatasync`).
pub(super) fn sync(path: &Path) -> std::io::Result<()> {
    regular_file::open(path, regular_file::options().append(true))?.sync_data()
}

/// Appends `bytes` (whole lines) after the last whole line, `end`, cutting off whatever a
/// crash left beyond it; [`sync`] makes them durable. Returns the file and its new end.
pub(super) fn append(path: &Path, end: u64, bytes: &[u8]) -> std::io::Result<(FileId, u64)> {
    let mut file = regular_file::open(
        path,
        regular_file::options()
            .append(true)
            .create(true)
            .mode(0o600),
    )?;
    let meta = file.metadata()?;
    if meta.len() != end {
        file.set_len(end)?;
    }
    file.write_all(bytes)?;
    let id = FileId {
        dev: meta.dev(),
        ino: meta.ino(),
    };
    Ok((id, end + bytes.len() as u64))
}

/// Removes the journal once ingest_hash.json holds all of it.
pub(super) fn remove(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The journal's identity and length now, if it exists.
pub(super) fn stat(path: &Path) -> std::io::Result<Option<(FileId, u64)>> {
    match std::fs::symlink_metadata(path) {
        Ok(m) => Ok(Some((
            FileId {
                dev: m.dev(),
                ino: m.ino(),
            },
            m.len(),
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(key: &str) -> Vec<u8> {
        let mut out = serde_json::to_vec(&Line {
            key: key.into(),
            hash: "sha256:ab".into(),
            size: 1,
            mtime_ns: 2,
            inode: 3,
            ctime_ns: Some(4),
            ingested_at: "x".into(),
        })
        .unwrap();
        out.push(b'\n');
        out
    }

    #[test]
    fn appended_lines_are_made_durable_once_per_slice() {
        let mut commits = Commits::default();
        assert!(!commits.pending());
        assert!(
            commits.appended(),
            "the first append of a process commits at once"
        );
        commits.done();
        for _ in 0..1000 {
            assert!(!commits.appended(), "a batch within the slice waits");
        }
        assert!(commits.pending(), "the end of the run still commits them");
        commits.last = Instant::now().checked_sub(COMMIT_EVERY);
        assert!(commits.appended());
        commits.done();
        assert!(!commits.pending());
    }

    #[test]
    fn a_torn_last_line_is_ignored_and_cut_off_by_the_next_append() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_for(&dir.path().join("ingest_hash.json"));
        assert!(path.ends_with("ingest_hash.json.journal"));
        let (_, end) = append(&path, 0, &line("a")).unwrap();
        let mut torn = line("b");
        torn.truncate(10);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(&torn)
            .unwrap();
        let tail = read(&path, 0).unwrap();
        assert_eq!(tail.lines.len(), 1);
        assert_eq!(tail.end, end);
        append(&path, tail.end, &line("c")).unwrap();
        let keys: Vec<String> = read(&path, 0)
            .unwrap()
            .lines
            .into_iter()
            .map(|entry| match entry {
                Entry::Recorded(l) => l.key,
                Entry::Gone(g) => g.key,
                Entry::Removed(r) => r.key,
                Entry::Stale(s) => s.key,
                Entry::Stamp(_) => panic!("no stamp was written"),
            })
            .collect();
        assert_eq!(keys, ["a", "c"]);
        assert_eq!(read(&path, end).unwrap().lines.len(), 1);
    }
}
