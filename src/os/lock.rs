//! Advisory locks (`flock(2)` through nix) in state_dir: `<action>.lock` for one run of an
//! action at a time, `<file>.lock` for writers of a shared state file, `scheduler.lock` for
//! the watcher. Lock files are never deleted: the OS releases a lock when its holder dies.
//!
//! A lock file is opened without following links (issue 10: a link planted where a lock
//! should be would have memsched truncate and write its target), and an action's lock is
//! handed to the step it runs, so a step that outlives a killed memsched keeps the action
//! locked until its last process ends (issue 9 item 3; see [`spawn_sharing`]).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, FdFlag, Flock, FlockArg, OFlag, fcntl};

use crate::error::{Error, Result};

mod holder;
pub use holder::holder;

/// A held lock; released on drop.
#[derive(Debug)]
pub struct Guard {
    path: PathBuf,
    _file: Flock<File>,
}

impl Guard {
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(mut held) = held().lock() {
            held.remove(&self.path);
        }
        // Dropping the Flock then unlocks the open file: a step's leftover background
        // process that inherited it holds nothing once memsched has finished the action.
    }
}

/// The locks this process holds, by path, with their descriptors: the runner hands an
/// action's lock to the step it starts.
fn held() -> &'static Mutex<HashMap<PathBuf, RawFd>> {
    static HELD: OnceLock<Mutex<HashMap<PathBuf, RawFd>>> = OnceLock::new();
    HELD.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Serialises every start of a step, so a descriptor made inheritable for one step is
/// never inherited by another thread's step.
fn spawning() -> &'static Mutex<()> {
    static SPAWNING: OnceLock<Mutex<()>> = OnceLock::new();
    SPAWNING.get_or_init(|| Mutex::new(()))
}

/// Whether an I/O error is the kernel refusing to follow a link (`O_NOFOLLOW`).
#[must_use]
pub fn is_link_refusal(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(Errno::ELOOP as i32)
}

/// Opens (creating) a lock file without following a link in its last component.
fn open(path: &Path) -> Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(OFlag::O_NOFOLLOW.bits())
        .open(path)
        .map_err(|source| {
            if is_link_refusal(&source) {
                Error::Link {
                    path: path.to_path_buf(),
                    what: "lock file",
                }
            } else {
                Error::Lock {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })?;
    let meta = file.metadata().map_err(|source| Error::Lock {
        path: path.to_path_buf(),
        source,
    })?;
    if !meta.is_file() {
        return Err(Error::Lock {
            path: path.to_path_buf(),
            source: std::io::Error::other("not a regular file"),
        });
    }
    Ok(file)
}

/// Takes the lock at `path` if it is free. When another process holds it, the error names
/// the process that holds it as the kernel says ([`holder()`]), else the pid written in the
/// file.
pub fn try_acquire(path: &Path) -> Result<Guard> {
    let file = open(path)?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(file) => {
            // The pid is for messages only; a lock without it is still a lock.
            let _ = file.set_len(0);
            let _ = (&*file).write_all(format!("{}\n", std::process::id()).as_bytes());
            if let Ok(mut held) = held().lock() {
                held.insert(path.to_path_buf(), file.as_raw_fd());
            }
            Ok(Guard {
                path: path.to_path_buf(),
                _file: file,
            })
        }
        Err((_, Errno::EWOULDBLOCK)) => Err(Error::LockHeld {
            path: path.to_path_buf(),
            pid: holder(path).or_else(|| holder_pid(path)),
        }),
        Err((_, errno)) => Err(Error::Lock {
            path: path.to_path_buf(),
            source: errno.into(),
        }),
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

/// Blocks until no process holds the lock at `path` (taking it shared for an instant, so
/// no holder is disturbed): how the watcher learns that work it skipped may run now.
pub fn wait_until_free(path: &Path) -> Result<()> {
    let file = open(path)?;
    match Flock::lock(file, FlockArg::LockShared) {
        Ok(_released_on_drop) => Ok(()),
        Err((_, errno)) => Err(Error::Lock {
            path: path.to_path_buf(),
            source: errno.into(),
        }),
    }
}

/// The pid a holder wrote into the lock file, if it wrote one (never through a link): who
/// took the lock last, not whether anyone holds it now (see [`holder()`]).
#[must_use]
pub fn holder_pid(path: &Path) -> Option<u32> {
    let mut text = String::new();
    crate::os::regular_file::open(path, crate::os::regular_file::options().read(true))
        .ok()?
        .take(64)
        .read_to_string(&mut text)
        .ok()?;
    text.trim().parse().ok()
}

/// Runs `spawn` (which starts a step) with the locks at `locks` (those this process holds)
/// inheritable, so the step and every process it starts hold the lock too: if memsched
/// dies while they run, the next run finds the action locked instead of starting a second
/// copy (issue 9 item 3). Every other descriptor stays close-on-exec, and starts are
/// serialised so no other step inherits it.
pub fn spawn_sharing<T>(locks: &[&Path], spawn: impl FnOnce() -> T) -> T {
    let _one_at_a_time = spawning()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let fds: Vec<RawFd> = held()
        .lock()
        .map(|held| locks.iter().filter_map(|p| held.get(*p).copied()).collect())
        .unwrap_or_default();
    let set = |flags: FdFlag| {
        for &fd in &fds {
            let _ = fcntl(fd, FcntlArg::F_SETFD(flags));
        }
    };
    set(FdFlag::empty());
    let spawned = spawn();
    set(FdFlag::FD_CLOEXEC);
    spawned
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

    #[test]
    fn a_link_where_the_lock_should_be_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let path = dir.path().join("ingest.lock");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        let e = try_acquire(&path).unwrap_err();
        assert!(matches!(e, Error::Link { .. }), "{e:?}");
        assert!(e.to_string().contains("ingest.lock"), "{e}");
        assert_eq!(std::fs::read_to_string(victim).unwrap(), "keep");
    }
}
