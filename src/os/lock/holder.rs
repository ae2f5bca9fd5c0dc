//! Who really holds a lock, as the kernel says (issue 20 item 2). The pid written in a
//! lock file is only who took it last: an idle watcher's file still names it, and after a
//! `kill -9` it names the dead process while the step that inherited the lock holds it.
//! Nothing here takes or tests the lock by taking it, so looking never makes a run skip.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The live process that holds the flock on the file at `path`, or `None` when no
/// process does (or the file is gone). When the lock is held but no process this user
/// may see shows it, the pid the kernel recorded for the lock.
#[must_use]
pub fn holder(path: &Path) -> Option<u32> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    let key = key(meta.dev(), meta.ino());
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    // The pid /proc/locks gives is the process that took the lock, which may be gone.
    let recorded: Vec<u32> = locks.lines().filter_map(|l| flock_pid(l, &key)).collect();
    let first = *recorded.first()?;
    recorded
        .iter()
        .copied()
        .find(|pid| holds(*pid, &key))
        .or_else(|| sharers(&key))
        .or(Some(first))
}

/// The `major:minor:inode` form /proc/locks and fdinfo name a file by (hex device
/// numbers, as the kernel prints them).
fn key(dev: u64, ino: u64) -> String {
    let (major, minor) = (nix::sys::stat::major(dev), nix::sys::stat::minor(dev));
    format!("{major:02x}:{minor:02x}:{ino}")
}

/// The pid of a FLOCK line on `key` (`1: FLOCK  ADVISORY  WRITE 4131 fe:00:10011913 0 EOF`).
fn flock_pid(line: &str, key: &str) -> Option<u32> {
    let mut words = line.split_whitespace().skip(1);
    if words.next()? != "FLOCK" {
        return None;
    }
    let mut words = words.skip(2);
    let pid = words.next()?;
    (words.next()? == key).then(|| pid.parse().ok())?
}

/// Whether `pid` has a descriptor whose open file holds a flock on `key`: fdinfo lists
/// the locks of the open file behind each descriptor, shared by every process that
/// inherited it.
fn holds(pid: u32, key: &str) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_to_string(fd.path()).is_ok_and(|info| {
            info.lines()
                .filter_map(|l| l.strip_prefix("lock:"))
                .any(|l| flock_pid(l.trim_start(), key).is_some())
        })
    })
}

/// The lowest pid of a live process holding the lock on `key` through an inherited
/// descriptor (a step left running by a killed memsched, say).
fn sharers(key: &str) -> Option<u32> {
    let mut pids: Vec<u32> = std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    pids.into_iter().find(|pid| holds(*pid, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_line_is_read_for_its_pid_when_it_names_the_file() {
        let line = "7: FLOCK  ADVISORY  WRITE 4131 fe:00:10011913 0 EOF";
        assert_eq!(flock_pid(line, "fe:00:10011913"), Some(4131));
        assert_eq!(flock_pid(line, "fe:00:1001191"), None);
        let posix = "1: POSIX  ADVISORY  WRITE 4131 fe:00:10011913 0 EOF";
        assert_eq!(flock_pid(posix, "fe:00:10011913"), None);
    }

    #[test]
    fn a_free_lock_has_no_holder_and_a_taken_one_is_held_by_us() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ingest.lock");
        std::fs::write(&path, "1\n").unwrap();
        assert_eq!(holder(&path), None);
        let _guard = super::super::try_acquire(&path).unwrap();
        assert_eq!(holder(&path), Some(std::process::id()));
    }
}
