//! [`IngestHash`]: the records in memory, read from ingest_hash.json and its journal,
//! kept up to date with other writers, recorded into and compacted.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde_json::value::RawValue;

use super::hash_text::HashText;
use super::journal::{self, Commits, Entry, FileId, Gone, Identity, Line, Removed, Stale};
use super::json::{self, Files, Top};
use super::record::{self, Digest, Record};
use crate::error::{Error, Result};
use crate::os::lock;
use crate::state::json_file::write_error;
use crate::state::stat::Stat;

/// A journal larger than this (and than a quarter of ingest_hash.json) is compacted at
/// the end of the run that grew it, even a run that saw only some paths.
const JOURNAL_COMPACT_BYTES: u64 = 256 * 1024;

/// What ingest_hash.json looked like when last read or written: another writer's
/// replacement has another inode, size or time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    id: FileId,
    size: u64,
    mtime_ns: i64,
}

#[derive(Debug)]
pub struct IngestHash {
    pub(super) path: PathBuf,
    journal: PathBuf,
    top: Top,
    files: Files,
    /// ingest_hash.json as last read or written (None: it did not exist).
    seen: Option<Seen>,
    /// The journal as last read or written, and where its last whole line ends.
    journal_id: Option<FileId>,
    journal_end: u64,
    /// The journal on disk is stamped for another ingest_hash.json than the one read: its
    /// lines were dropped, and the next append starts it afresh.
    journal_stale: bool,
    /// When the journal on disk was started, from its stamp (`None`: no journal, or one an
    /// older memsched wrote without the time).
    journal_since: Option<SystemTime>,
    /// Whether appended lines wait for their `fdatasync`.
    commits: Commits,
    /// Lines recorded but not yet appended to the journal.
    pending: Vec<u8>,
    /// The generation of the current full walk (see [`IngestHash::mark`]).
    generation: u32,
}

impl IngestHash {
    /// Loads ingest_hash.json and replays the journal beside it; a missing file is an empty
    /// record.
    pub fn load(path: &Path) -> Result<IngestHash> {
        let mut hashes = IngestHash {
            path: path.to_path_buf(),
            journal: journal::path_for(path),
            top: json::new_top(),
            files: Files::default(),
            seen: None,
            journal_id: None,
            journal_end: 0,
            journal_stale: false,
            journal_since: None,
            commits: Commits::default(),
            pending: Vec::new(),
            generation: 0,
        };
        hashes.read_json()?;
        hashes.read_journal()?;
        Ok(hashes)
    }

    fn read_json(&mut self) -> Result<()> {
        let path = &self.path;
        let Some((bytes, meta)) = json::read(path)? else {
            return Ok(());
        };
        let (top, files) = json::parse(path, &bytes)?;
        self.top = top;
        self.files = files;
        self.seen = Some(bytes_seen(&meta));
        Ok(())
    }

    fn read_journal(&mut self) -> Result<()> {
        let tail = journal::read(&self.journal, self.journal_end)
            .map_err(|source| state_error(&self.journal, source))?;
        if tail.bad > 0 {
            log::warn!(
                "{}: {} lines do not parse and were skipped",
                self.journal.display(),
                tail.bad
            );
        }
        let from_start = self.journal_end == 0;
        self.journal_id = tail.id;
        let mut lines = tail.lines.into_iter().peekable();
        let seen = identity(self.seen);
        let stale = matches!(lines.peek(), Some(Entry::Stamp(s)) if s.manifest != seen);
        if from_start {
            self.journal_since = match lines.peek() {
                Some(Entry::Stamp(s)) => s.since.as_deref().and_then(crate::state::parse_time),
                _ => None,
            };
        }
        if from_start && stale {
            log::info!(
                "{}: written for an ingest_hash.json that was replaced since; the file there now wins and the journal's {} lines are dropped",
                self.journal.display(),
                lines.len() - 1
            );
            self.journal_stale = true;
            self.journal_end = tail.end;
            return Ok(());
        }
        for entry in lines {
            match entry {
                Entry::Recorded(line) => {
                    let stat = Stat {
                        size: line.size,
                        mtime_ns: line.mtime_ns,
                        inode: line.inode,
                        ctime_ns: line.ctime_ns,
                    };
                    self.put(&line.key, &line.hash, stat, &line.ingested_at);
                }
                Entry::Gone(gone) => {
                    if let Some(rec) = self.files.get_mut(&gone.key) {
                        rec.set_gone(&gone.gone_at);
                    }
                }
                Entry::Removed(removed) => {
                    self.files.remove(&removed.key);
                }
                Entry::Stale(stale) => {
                    if let Some(rec) = self.files.get_mut(&stale.key) {
                        rec.set_stale(&stale.stale_at);
                    }
                }
                Entry::Stamp(_) => {}
            }
        }
        self.journal_end = tail.end;
        Ok(())
    }

    /// Brings a manifest held across runs up to date with disk: reloads it when
    /// ingest_hash.json was replaced or the journal cut by another process (a `--once`
    /// beside the watcher, a restored backup), and replays lines another process appended.
    pub fn refresh(&mut self) -> Result<()> {
        let now = match std::fs::symlink_metadata(&self.path) {
            Ok(meta) => Some(bytes_seen(&meta)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => return Err(state_error(&self.path, source)),
        };
        let journal_now =
            journal::stat(&self.journal).map_err(|source| state_error(&self.journal, source))?;
        let journal_same = match journal_now {
            None => self.journal_end == 0,
            Some((id, len)) => {
                self.journal_id.is_none_or(|mine| mine == id)
                    && len >= self.journal_end
                    && (!self.journal_stale || len == self.journal_end)
            }
        };
        if now != self.seen || !journal_same || !self.pending.is_empty() {
            log::debug!("{}: changed on disk, read again", self.path.display());
            *self = IngestHash::load(&self.path)?;
            return Ok(());
        }
        if journal_now.is_some_and(|(_, len)| len > self.journal_end) {
            self.read_journal()?;
        }
        Ok(())
    }

    /// The record of `key`.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&Record> {
        self.files.get(key)
    }

    /// Every record with its key, in no particular order.
    pub fn records(&self) -> impl Iterator<Item = (&str, &Record)> {
        self.files.iter()
    }

    /// Every recorded key, in no particular order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.files.keys()
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.files.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Content hash → one key recorded with it; built only when some file needed hashing.
    #[must_use]
    pub fn by_hash(&self) -> HashMap<Digest, &str> {
        self.files
            .iter()
            .filter_map(|(k, r)| Some((r.hash()?, k)))
            .collect()
    }

    /// Starts a full walk: every file the walk finds is then [`mark`](Self::mark)ed, and
    /// [`unmarked`](Self::unmarked) lists the records it did not find, with no set of
    /// 100,000 keys on the side.
    pub fn begin_walk(&mut self) -> u32 {
        self.generation = self.generation.wrapping_add(1).max(1);
        self.generation
    }

    /// The record of `key`, marked as found by the walk `generation`.
    pub fn mark(&mut self, key: &str, generation: u32) -> Option<&Record> {
        let rec = self.files.get_mut(key)?;
        rec.seen = generation;
        Some(rec)
    }

    /// Keys the walk `generation` did not find.
    pub fn unmarked(&self, generation: u32) -> impl Iterator<Item = &str> {
        self.files
            .iter()
            .filter(move |(_, r)| r.seen != generation)
            .map(|(k, _)| k)
    }

    /// Records `key` as ingested with `hash` (a [`Digest`], or any text: what is not
    /// memsched's own form is kept as written) and `stat` at `now`; other fields of its
    /// record stay. The line goes to the journal at the next [`flush`](Self::flush).
    pub fn record<H: HashText + ?Sized>(&mut self, key: &str, hash: &H, stat: Stat, now: &str) {
        let line = Line {
            key: key.to_owned(),
            hash: hash.text(),
            size: stat.size,
            mtime_ns: stat.mtime_ns,
            inode: stat.inode,
            ctime_ns: stat.ctime_ns,
            ingested_at: now.to_owned(),
        };
        serde_json::to_writer(&mut self.pending, &line).expect("a journal line always serialises");
        self.pending.push(b'\n');
        let hash = hash.digest().ok_or(&*line.hash);
        self.put_parsed(key, hash, stat, now);
    }

    /// Completes the stat of `key`'s record with the change time of `stat`, which the
    /// record lacks (written by an older memsched) and otherwise matches: its hash and
    /// ingest time stay, so nothing is taken as newly ingested. Journaled like
    /// [`record`](Self::record).
    pub fn complete_stat(&mut self, key: &str, stat: Stat) {
        let Some(rec) = self.files.get(key) else {
            return;
        };
        let (Some(hash), Some(at)) = (rec.hash_text(), rec.ingested_at_text()) else {
            return;
        };
        let incomplete = rec
            .stat()
            .is_some_and(|r| r.ctime_ns.is_none() && stat.matches(&r));
        if !incomplete || rec.gone_at().is_some() {
            return;
        }
        self.record(key, hash.as_str(), stat, &at);
    }

    /// Marks `key`'s file as found gone at `now`: a pending removal, until the removal is
    /// confirmed ([`remove`](Self::remove)) or the file is recorded again. Journaled like
    /// [`record`](Self::record); a record already marked keeps its first time.
    pub fn mark_gone(&mut self, key: &str, now: &str) {
        let Some(rec) = self.files.get_mut(key) else {
            return;
        };
        if rec.gone_at().is_some() {
            return;
        }
        rec.set_gone(now);
        self.journal_line(&Entry::Gone(Gone {
            key: key.to_owned(),
            gone_at: now.to_owned(),
        }));
    }

    /// Marks `key`'s record as no proof of what is indexed, from `now` until the file is
    /// recorded again: a removal of it is about to be sent (written ahead, so a crash
    /// mid-removal leaves the mark), or a send of newer content failed. Journaled like
    /// [`record`](Self::record).
    pub fn mark_stale(&mut self, key: &str, now: &str) {
        let Some(rec) = self.files.get_mut(key) else {
            return;
        };
        if rec.stale_at().is_some() {
            return;
        }
        rec.set_stale(now);
        self.journal_line(&Entry::Stale(Stale {
            key: key.to_owned(),
            stale_at: now.to_owned(),
        }));
    }

    /// Drops `key`'s record: the step confirmed its removal, or a person forgot it.
    /// Journaled like [`record`](Self::record).
    pub fn remove(&mut self, key: &str, now: &str) {
        if self.files.remove(key).is_some() {
            self.journal_line(&Entry::Removed(Removed {
                key: key.to_owned(),
                removed_at: now.to_owned(),
            }));
        }
    }

    fn journal_line(&mut self, entry: &Entry) {
        serde_json::to_writer(&mut self.pending, entry).expect("a journal line always serialises");
        self.pending.push(b'\n');
    }

    fn put(&mut self, key: &str, hash: &str, stat: Stat, at: &str) {
        self.put_parsed(key, Digest::parse(hash).ok_or(hash), stat, at);
    }

    /// [`put`](Self::put) with the hash already read: a [`Digest`], or text in another form.
    fn put_parsed(&mut self, key: &str, hash: Result<Digest, &str>, stat: Stat, at: &str) {
        let hash = hash.map_err(raw_string);
        let at = record::own_time(at).ok_or_else(|| raw_string(at));
        match self.files.get_mut(key) {
            Some(rec) => rec.set(hash, stat, at),
            None => {
                let mut rec = Record::new(Digest([0; 32]), stat, SystemTime::UNIX_EPOCH);
                rec.set(hash, stat, at);
                self.files.insert(key, rec);
            }
        }
    }

    /// Appends what was recorded since the last flush to the journal, made durable when
    /// the last [`commit`](Self::commit) is a quarter second old: a crash of memsched
    /// after it loses nothing, a crash of the machine at most that quarter second.
    pub fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        // A new journal, or one stamped for another ingest_hash.json, starts with the
        // stamp of the one these lines apply to.
        let fresh = self.journal_end == 0 || self.journal_stale;
        if fresh {
            let now = SystemTime::now();
            let mut lines = journal::stamp_line(identity(self.seen), &crate::state::timestamp(now));
            self.journal_since = Some(now);
            lines.append(&mut self.pending);
            self.pending = lines;
        }
        let from = if fresh { 0 } else { self.journal_end };
        // A failed append is a failed write, told as one (issue 21 item 8: a full disk was
        // "cannot read").
        let (id, end) = journal::append(&self.journal, from, &self.pending)
            .map_err(|source| write_error(&self.journal, source))?;
        self.journal_stale = false;
        self.journal_id = Some(id);
        self.journal_end = end;
        // Dropped, not cleared: a first run over 100,000 files grew it to megabytes.
        self.pending = Vec::new();
        if self.commits.appended() {
            self.commit()?;
        }
        Ok(())
    }

    /// Makes every line appended so far durable (one `fdatasync`, none if there is
    /// nothing new): before a run ends, and before a task that relies on the records.
    pub fn commit(&mut self) -> Result<()> {
        if !self.commits.pending() {
            return Ok(());
        }
        journal::sync(&self.journal).map_err(|source| Error::state_write(&self.journal, source))?;
        self.commits.done();
        Ok(())
    }

    /// Whether some records are only in the journal (or not yet even there).
    #[must_use]
    pub fn has_journal(&self) -> bool {
        self.journal_end > 0 || !self.pending.is_empty()
    }

    /// Whether the journal was started at least `age` before `now`. One whose start is
    /// not known (an older memsched's) counts as old: it is folded as it always was.
    #[must_use]
    pub fn journal_older_than(&self, age: Duration, now: SystemTime) -> bool {
        self.journal_since
            .is_none_or(|since| now.duration_since(since).is_ok_and(|d| d >= age))
    }

    /// Whether the journal has grown enough to be worth folding in now.
    #[must_use]
    pub fn journal_is_large(&self) -> bool {
        let json = self.seen.map_or(0, |s| s.size);
        self.journal_end > JOURNAL_COMPACT_BYTES.max(json / 4)
    }

    /// Compaction: writes every record to ingest_hash.json (atomic replace), then removes
    /// the journal it now holds. A crash between the two replays the journal onto records
    /// that already hold it, which changes nothing.
    pub fn save(&mut self) -> Result<()> {
        let bytes = json::write(&self.top, &self.files);
        crate::state::atomic::write(&self.path, &bytes)
            .map_err(|source| write_error(&self.path, source))?;
        journal::remove(&self.journal)
            .map_err(|source| Error::state_write(&self.journal, source))?;
        self.pending = Vec::new();
        // A manifest that grew record by record (a first run) holds room for up to an
        // eighth more records than it has (see `Files::insert`) until now.
        self.files.shrink_to_fit();
        self.journal_id = None;
        self.journal_end = 0;
        self.journal_stale = false;
        self.journal_since = None;
        self.commits.done();
        self.seen = std::fs::symlink_metadata(&self.path)
            .ok()
            .map(|m| bytes_seen(&m));
        Ok(())
    }
}

fn bytes_seen(meta: &std::fs::Metadata) -> Seen {
    Seen {
        id: FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        },
        size: meta.len(),
        mtime_ns: Stat::of(meta).mtime_ns,
    }
}

/// The identity a journal's stamp gives ingest_hash.json as `seen` (None: no file).
fn identity(seen: Option<Seen>) -> Option<Identity> {
    seen.map(|s| Identity {
        inode: s.id.ino,
        size: s.size,
        mtime_ns: s.mtime_ns,
    })
}

fn raw_string(text: &str) -> Box<RawValue> {
    RawValue::from_string(serde_json::to_string(text).expect("a string always serialises"))
        .expect("a serialised string is JSON")
}

fn state_error(path: &Path, source: std::io::Error) -> Error {
    if lock::is_link_refusal(&source) {
        Error::Link {
            path: path.to_path_buf(),
            what: "state file",
        }
    } else {
        Error::StateRead {
            path: path.to_path_buf(),
            source,
        }
    }
}

#[cfg(test)]
mod tests;
