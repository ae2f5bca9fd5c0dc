//! Atomic replace: a crash leaves the old file or the new one, never a torn one. Every
//! write is also remembered by content hash, so the watcher can tell memsched's own writes
//! from other writers' (see [`is_own_write`]).

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use sha2::{Digest, Sha256};

/// Recent writes remembered per file: enough for a burst of writes whose events arrive
/// after the last of them.
const REMEMBERED: usize = 8;

type Digests = HashMap<PathBuf, VecDeque<[u8; 32]>>;

/// This process's recent writes. Process-wide on purpose: runs happen on worker threads
/// and the watcher must recognise their writes without being handed anything.
fn own_writes() -> &'static Mutex<Digests> {
    static OWN: OnceLock<Mutex<Digests>> = OnceLock::new();
    OWN.get_or_init(|| Mutex::new(HashMap::new()))
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Whether `bytes` are what this process recently wrote to `path`.
#[must_use]
pub fn is_own_write(path: &Path, bytes: &[u8]) -> bool {
    let d = digest(bytes);
    own_writes()
        .lock()
        .is_ok_and(|w| w.get(path).is_some_and(|recent| recent.contains(&d)))
}

/// Writes `bytes` to a temporary file beside `path`, flushes it to disk, renames it over
/// `path` and flushes the folder, so the rename itself survives a power cut.
pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    // Remembered before the rename, so an event for the new content always finds it.
    if let Ok(mut w) = own_writes().lock() {
        let recent = w.entry(path.to_path_buf()).or_default();
        if recent.len() == REMEMBERED {
            recent.pop_front();
        }
        recent.push_back(digest(bytes));
    }
    let mut tmp = tempfile::Builder::new()
        .prefix(".memsched-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_content_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, "old").unwrap();
        write(&path, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn own_writes_are_recognised_and_others_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.json");
        write(&path, b"ours").unwrap();
        assert!(is_own_write(&path, b"ours"));
        assert!(!is_own_write(&path, b"theirs"));
        assert!(!is_own_write(&dir.path().join("other.json"), b"ours"));
    }
}
