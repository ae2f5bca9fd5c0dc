//! The ingest hashing: the content hash of every file the plan must read, side by side on
//! every core, behind a progress bar on a terminal, taking on trust what the watcher
//! already read as the writers closed their files.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest as _, Sha256};

use super::hints::WatcherHints;
use super::scan::Found;
use crate::state::ingest_hash::Digest;
use crate::state::stat::Stat;

/// Hashing more files than this shows a progress bar (on a terminal).
const PROGRESS_FROM: usize = 200;

/// A file old enough to read: its key, what the scan found, and its absolute path.
pub(super) struct ToRead {
    pub(super) key: String,
    pub(super) file: Found,
    pub(super) abs: PathBuf,
}

/// What reading a file gave: its content hash, and its stat right after (a file that
/// changed while it was read is still being written).
pub(super) struct Hashed {
    pub(super) hash: Digest,
    pub(super) after: Option<Stat>,
}

/// The hash and stat of each of `to_read`, in order: taken from what the watcher read as
/// the writers closed their files when the stat still matches, read here otherwise (side
/// by side). Also how many came from the watcher.
pub(super) fn read_all(
    hints: &WatcherHints,
    to_read: &[ToRead],
    progress: &ProgressBar,
) -> (Vec<std::io::Result<Hashed>>, usize) {
    let early: Vec<Option<std::io::Result<Hashed>>> = to_read
        .iter()
        .map(|r| {
            hints.hash_read_early(&r.file.rel, r.file.stat).map(|hash| {
                Ok(Hashed {
                    hash,
                    after: Some(r.file.stat),
                })
            })
        })
        .collect();
    let prehashed = early.iter().filter(|e| e.is_some()).count();
    let paths: Vec<&Path> = to_read
        .iter()
        .zip(&early)
        .filter(|(_, e)| e.is_none())
        .map(|(r, _)| r.abs.as_path())
        .collect();
    let mut fresh = hash_all(&paths, progress).into_iter();
    let read = early
        .into_iter()
        .map(|e| {
            e.unwrap_or_else(|| {
                fresh
                    .next()
                    .unwrap_or_else(|| Err(std::io::ErrorKind::Interrupted.into()))
            })
        })
        .collect();
    (read, prehashed)
}

/// Hashes `files` side by side, one thread per core (issue 8: 10,000 new files took about
/// as long to hash as the debounce). Results come back in the order of `files`, each
/// written in place: no per-thread lists to merge for 100,000 files.
fn hash_all(files: &[&Path], progress: &ProgressBar) -> Vec<std::io::Result<Hashed>> {
    /// Files a worker takes at a time: small enough to share uneven files out, large
    /// enough that taking them costs nothing.
    const CHUNK: usize = 64;
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .min(files.len().div_ceil(CHUNK));
    let one = |path: &Path, buf: &mut Vec<u8>| {
        let hashed = hash_file(path, buf)?;
        progress.inc(1);
        Ok(hashed)
    };
    let mut results: Vec<std::io::Result<Hashed>> = Vec::with_capacity(files.len());
    results.resize_with(files.len(), || Err(std::io::ErrorKind::Interrupted.into()));
    let work = Mutex::new(files.chunks(CHUNK).zip(results.chunks_mut(CHUNK)));
    let worker = || {
        let mut buf = vec![0; 64 * 1024];
        loop {
            let next = work.lock().map(|mut w| w.next());
            let Ok(Some((paths, out))) = next else { break };
            for (path, slot) in paths.iter().zip(out) {
                *slot = one(path, &mut buf);
            }
        }
    };
    if threads <= 1 {
        worker();
    } else {
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(worker);
            }
        });
    }
    results
}

/// The content hash of `path` and its stat once read, reading through `buf` (a thread
/// that hashes file after file keeps one: zeroing 64 KiB per small file cost more than
/// hashing it).
pub fn hash_one(path: &Path, buf: &mut [u8]) -> std::io::Result<(Digest, Option<Stat>)> {
    hash_file(path, buf).map(|h| (h.hash, h.after))
}

/// The SHA-256 of the file's content, and the file's stat once it is read (from the open
/// file: no second lookup of its path). A file replaced by a rename meanwhile keeps the
/// old stat here, and its new inode sends it again next run.
fn hash_file(path: &Path, buf: &mut [u8]) -> std::io::Result<Hashed> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    loop {
        let n = file.read(buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let after = file.metadata().ok().map(|m| Stat::of(&m));
    Ok(Hashed {
        hash: Digest(hasher.finalize().into()),
        after,
    })
}

/// A bar for hashing `len` files, drawn only when asked, on a terminal, for many files.
pub(super) fn progress_bar(wanted: bool, len: usize) -> ProgressBar {
    if !wanted || len < PROGRESS_FROM || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template("hashing {bar:40} {pos}/{len} files ({eta} left)")
            .expect("the template is valid"),
    );
    bar
}
