//! Advisory locks (fslock: `flock` on Unix) in state_dir: `<action>.lock` for one run of an
//! action at a time, `<file>.lock` for writers of a shared state file, `scheduler.lock` for
//! the watcher. Lock files are never deleted: the OS releases a lock when its holder dies.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fslock::LockFile;

use crate::error::{Error, Result};

/// A held lock; released on drop.
#[derive(Debug)]
pub struct Guard {
    path: PathBuf,
    _file: LockFile,
}

impl Guard {
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Takes the lock at `path` if it is free. When another process holds it, the error names
/// the holder's pid (as it wrote it into the lock file).
pub fn try_acquire(path: &Path) -> Result<Guard> {
    let lock_error = |source| Error::Lock {
        path: path.to_path_buf(),
        source,
    };
    let mut file = LockFile::open(path).map_err(lock_error)?;
    if file.try_lock_with_pid().map_err(lock_error)? {
        Ok(Guard {
            path: path.to_path_buf(),
            _file: file,
        })
    } else {
        Err(Error::LockHeld {
            path: path.to_path_buf(),
            pid: holder_pid(path),
        })
    }
}

/// Waits up to `patience` for the lock at `path`: used for short critical sections on
/// shared state files, where a writer holds the lock for milliseconds.
pub fn acquire_within(path: &Path, patience: Duration) -> Result<Guard> {
    let deadline = Instant::now() + patience;
    let mut pause = Duration::from_millis(2);
    loop {
        match try_acquire(path) {
            Err(Error::LockHeld { .. }) if Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// The pid a holder wrote into the lock file, if it wrote one.
#[must_use]
pub fn holder_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_is_refused_with_the_holders_pid_and_freed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ingest.lock");
        let guard = try_acquire(&path).unwrap();
        match try_acquire(&path) {
            Err(Error::LockHeld { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("expected LockHeld, got {other:?}"),
        }
        drop(guard);
        assert!(try_acquire(&path).is_ok());
        assert!(path.exists(), "lock files are never deleted");
    }
}
