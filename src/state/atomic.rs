//! Atomic replace: a crash leaves the old file or the new one, never a torn one. Every
//! write is also remembered by content hash, so the watcher can tell memsched's own writes
//! from other writers' (see [`is_own_write`]).

use std::collections::{HashMap, VecDeque};
use std::fs::{File, Metadata, OpenOptions, Permissions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::unistd::{Gid, Uid, fchown};

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
pub(crate) fn is_own_write(path: &Path, bytes: &[u8]) -> bool {
    let d = digest(bytes);
    own_writes()
        .lock()
        .is_ok_and(|w| w.get(path).is_some_and(|recent| recent.contains(&d)))
}

/// Writes `bytes` to a temporary file beside `path`, flushes it to disk, renames it over
/// `path` and flushes the folder, so the rename itself survives a power cut.
///
/// The file keeps its mode, and its owner where this process may give it (root), so the
/// pipeline's other scripts can still read it; a new file is the user's alone (0600)
/// (issue 10 item 6). A link at `path` is refused with `ELOOP` rather than replaced or
/// followed, and the temporary file is created new, never through a link (issue 10 item 2).
pub(crate) fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let existing = match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            return Err(std::io::Error::from_raw_os_error(Errno::ELOOP as i32));
        }
        Ok(meta) => Some(meta),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    // Remembered before the rename, so an event for the new content always finds it.
    if let Ok(mut w) = own_writes().lock() {
        let recent = w.entry(path.to_path_buf()).or_default();
        if recent.len() == REMEMBERED {
            recent.pop_front();
        }
        recent.push_back(digest(bytes));
    }
    let (tmp, mut file) = create_temp(dir)?;
    let written = (|| {
        file.write_all(bytes)?;
        if let Some(meta) = &existing {
            keep_owner_and_mode(&file, meta)?;
        }
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    File::open(dir)?.sync_all()
}

/// A new temporary file in `dir`, mode 0600: `create_new` (`O_EXCL`) never opens an
/// existing file or follows a link planted under the name.
/// Removes the temporary files in `dir` that a writer killed mid-write left behind
/// (`kill -9` between create and rename): those of processes that no longer exist, and
/// only regular files this user owns. A live pid's file may be in use and stays.
pub(crate) fn sweep_stale(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let me = Uid::effective().as_raw();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = temp_owner(&name.to_string_lossy()) else {
            continue;
        };
        let dead =
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) == Err(Errno::ESRCH);
        let ours = std::fs::symlink_metadata(entry.path())
            .is_ok_and(|m| m.file_type().is_file() && m.uid() == me);
        if dead && ours && std::fs::remove_file(entry.path()).is_ok() {
            log::info!(
                "removed {}, left by a writer that died",
                entry.path().display()
            );
        }
    }
}

/// The pid in a temporary file's name (`.memsched-<pid>-<n>-<nanos>.tmp`).
fn temp_owner(name: &str) -> Option<i32> {
    let rest = name.strip_prefix(".memsched-")?.strip_suffix(".tmp")?;
    let mut parts = rest.split('-');
    let pid = parts.next()?.parse().ok()?;
    (parts.count() == 2).then_some(pid)
}

fn create_temp(dir: &Path) -> std::io::Result<(PathBuf, File)> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut last = None;
    for _ in 0..16 {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(
            ".memsched-{}-{n}-{nanos:08x}.tmp",
            std::process::id()
        ));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(OFlag::O_NOFOLLOW.bits())
            .open(&tmp)
        {
            Ok(file) => return Ok((tmp, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free temporary name")))
}

/// Gives the new file the old one's owner (where permitted: root may, others may at most
/// keep the group) and mode. The mode comes last, since a change of owner clears set-id
/// bits.
fn keep_owner_and_mode(file: &File, old: &Metadata) -> std::io::Result<()> {
    let new = file.metadata()?;
    if (new.uid(), new.gid()) != (old.uid(), old.gid()) {
        let (uid, gid) = (Uid::from_raw(old.uid()), Gid::from_raw(old.gid()));
        if fchown(file.as_raw_fd(), Some(uid), Some(gid)).is_err() {
            let _ = fchown(file.as_raw_fd(), None, Some(gid));
        }
    }
    file.set_permissions(Permissions::from_mode(old.mode() & 0o7777))
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
    fn a_rewrite_keeps_the_mode_and_a_new_file_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shared.json");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        write(&path, b"new").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o7777;
        assert_eq!(mode(&path), 0o644);
        let fresh = dir.path().join("fresh.json");
        write(&fresh, b"x").unwrap();
        assert_eq!(mode(&fresh), 0o600);
    }

    #[test]
    fn a_link_at_the_path_is_refused_and_its_target_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let path = dir.path().join("state.json");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        let e = write(&path, b"evil").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(Errno::ELOOP as i32));
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
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
