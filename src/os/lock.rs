//! Advisory locks (`flock(2)` through nix) in state_dir: `<action>.lock` for one run of an
//! action at a time, `<file>.lock` for writers of a shared state file, `scheduler.lock` for
//! the watcher. Lock files are never deleted: the OS releases a lock when its holder dies.
//!
//! A lock file is opened without following links (issue 10: a link planted where a lock
//! should be would have memsched truncate and write its target), and an action's lock is
//! handed to the step it runs, so a step that outlives a killed memsched keeps the action
//! locked until its last process ends (issue 9 item 3; see [`spawn_sharing`]).
//!
//! The lock file says who took the lock (its pid) and the process groups of the steps it
//! was handed to: a helper a step started in a session of its own (an embedding server)
//! inherits the lock too, and once the taker and those groups are gone the lock is the
//! helper's alone; the next run sets that file aside and takes a new one (issue 18 item 12,
//! see [`holder::leftover`]).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, FdFlag, Flock, FlockArg, OFlag, fcntl};

use crate::error::{Error, Result};

mod holder;
pub use holder::{Leftover, holder, leftover};

/// What a lock file's second line starts with: the process groups of the steps the lock
/// was handed to.
const STEP_GROUPS: &str = "step_groups";
/// The name a lock file only a leftover helper holds is set aside under (beside it).
const SET_ASIDE: &str = "left-behind";
/// How long a run waits for another to finish setting a lock file aside.
const SET_ASIDE_PATIENCE: Duration = Duration::from_secs(2);

/// A held lock; released on drop.
#[derive(Debug)]
pub struct Guard {
    path: PathBuf,
    _file: Flock<File>,
    set_aside: Option<String>,
}

impl Guard {
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What taking the lock had to do first: the sentence saying which leftover helper
    /// held the old lock file, set aside (see [`leftover`]).
    #[must_use]
    pub fn set_aside(&self) -> Option<&str> {
        self.set_aside.as_deref()
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

/// One lock this process holds.
#[derive(Debug)]
struct Held {
    /// The descriptor the lock was taken through, which a step inherits.
    fd: RawFd,
    /// A close-on-exec copy of it, to rewrite the file's record.
    file: File,
    /// The process groups of the steps it was handed to that may still run.
    step_groups: Vec<u32>,
    /// Whether it was handed to a step at all: a step's helper may hold it after the
    /// step's group is gone.
    handed: bool,
}

impl Held {
    /// Writes the file's record: this process's pid, then the step groups (see
    /// [`Record`]). Groups with no process left are dropped first. For messages and
    /// [`leftover`] only: a lock without its record is still a lock.
    fn write_record(&mut self) {
        self.step_groups.retain(|group| group_alive(*group));
        let mut text = format!("{}\n", std::process::id());
        // The line stays once a step had the lock, its groups or none: a helper started
        // by a step that has ended holds the lock as surely as one whose step still runs.
        if self.handed {
            let groups: Vec<String> = self.step_groups.iter().map(u32::to_string).collect();
            text.push_str(&format!("{STEP_GROUPS} {}\n", groups.join(" ")));
        }
        let _ = self.file.set_len(0);
        let _ = self.file.write_all_at(text.as_bytes(), 0);
    }
}

/// Whether any process is left in the process group `group` (one this user may not
/// signal counts: it is there).
fn group_alive(group: u32) -> bool {
    let Ok(group) = i32::try_from(group) else {
        return false;
    };
    nix::sys::signal::killpg(nix::unistd::Pid::from_raw(group), None) != Err(Errno::ESRCH)
}

/// The locks this process holds, by path: the runner hands an action's lock to the step
/// it starts, and notes the step's process group in it.
fn held() -> &'static Mutex<HashMap<PathBuf, Held>> {
    static HELD: OnceLock<Mutex<HashMap<PathBuf, Held>>> = OnceLock::new();
    HELD.get_or_init(|| Mutex::new(HashMap::new()))
}

/// What a lock file says: who took the lock last, and the process groups of the steps
/// that process handed it to (as they were when it last wrote).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    pub pid: Option<u32>,
    pub step_groups: Vec<u32>,
    /// Whether that process handed the lock to a step (the line is there, groups or not).
    pub handed: bool,
}

impl Record {
    /// The record in the lock file at `path` (never read through a link).
    #[must_use]
    pub fn read(path: &Path) -> Record {
        let mut text = String::new();
        let read =
            crate::os::regular_file::open(path, crate::os::regular_file::options().read(true))
                .and_then(|file| file.take(4096).read_to_string(&mut text));
        if read.is_err() {
            return Record::default();
        }
        Record::parse(&text)
    }

    fn parse(text: &str) -> Record {
        let mut lines = text.lines();
        let pid = lines.next().and_then(|l| l.trim().parse().ok());
        let groups = lines.find_map(|l| l.strip_prefix(STEP_GROUPS));
        let step_groups = groups
            .map(|groups| {
                groups
                    .split_whitespace()
                    .filter_map(|g| g.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        Record {
            pid,
            step_groups,
            handed: groups.is_some(),
        }
    }
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
/// file. When only a helper a killed run's step left behind holds it ([`leftover`]), that
/// file is set aside and a new one taken; the guard says so ([`Guard::set_aside`]).
pub fn try_acquire(path: &Path) -> Result<Guard> {
    let taken = take(path);
    if !matches!(taken, Err(Error::LockHeld { .. })) {
        return taken;
    }
    match leftover(path) {
        Some(left) => {
            set_aside(path, &left)?;
            let note = format!(
                "set {} aside: {} {} it, left behind by a step of a killed run; a new lock \
                 replaces it (`kill {}` ends that helper if nothing needs it)",
                path.display(),
                left.describe(),
                if left.holders.len() == 1 {
                    "holds"
                } else {
                    "hold"
                },
                left.pids().join(" ")
            );
            log::warn!("{note}");
            let mut guard = take(path)?;
            guard.set_aside = Some(note);
            Ok(guard)
        }
        None => taken,
    }
}

/// Takes the lock at `path` if it is free, as [`try_acquire`] without the leftover check.
fn take(path: &Path) -> Result<Guard> {
    loop {
        let file = open(path)?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(file) => {
                // A file set aside while this took it is no lock any more: take the new one.
                if !is_at(&file, path) {
                    continue;
                }
                let Ok(copy) = file.try_clone() else {
                    return Err(Error::Lock {
                        path: path.to_path_buf(),
                        source: std::io::Error::last_os_error(),
                    });
                };
                let mut entry = Held {
                    fd: file.as_raw_fd(),
                    file: copy,
                    step_groups: Vec::new(),
                    handed: false,
                };
                entry.write_record();
                if let Ok(mut held) = held().lock() {
                    held.insert(path.to_path_buf(), entry);
                }
                return Ok(Guard {
                    path: path.to_path_buf(),
                    _file: file,
                    set_aside: None,
                });
            }
            Err((_, Errno::EWOULDBLOCK)) => {
                return Err(Error::LockHeld {
                    path: path.to_path_buf(),
                    pid: holder(path).or_else(|| holder_pid(path)),
                });
            }
            Err((_, errno)) => {
                return Err(Error::Lock {
                    path: path.to_path_buf(),
                    source: errno.into(),
                });
            }
        }
    }
}

/// Whether the open `file` is still the file at `path` (same device and inode).
fn is_at(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::symlink_metadata(path)) {
        (Ok(open), Ok(there)) => (open.dev(), open.ino()) == (there.dev(), there.ino()),
        _ => false,
    }
}

/// Renames the lock file at `path`, which only `left`'s helpers hold, to
/// `<name>.left-behind`: the next open makes a new file, a new lock. Runs setting the same
/// file aside take turns (a flock on the folder), and each checks again under it, so a
/// file another run has just made is never moved.
fn set_aside(path: &Path, left: &Leftover) -> Result<()> {
    let fail = |source: std::io::Error| Error::Lock {
        path: path.to_path_buf(),
        source,
    };
    let folder = path.parent().unwrap_or(Path::new("."));
    let deadline = Instant::now() + SET_ASIDE_PATIENCE;
    let _turn = loop {
        let dir = File::open(folder).map_err(fail)?;
        match Flock::lock(dir, FlockArg::LockExclusiveNonblock) {
            Ok(turn) => break turn,
            Err((_, Errno::EWOULDBLOCK)) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err((_, errno)) => return Err(fail(errno.into())),
        }
    };
    if leftover(path).is_some_and(|again| again.file == left.file) {
        let mut aside = path.as_os_str().to_owned();
        aside.push(format!(".{SET_ASIDE}"));
        std::fs::rename(path, aside).map_err(fail)?;
    }
    Ok(())
}

/// Notes in each of `locks` (held by this process) that the step in process group
/// `group` was handed it: the mark [`leftover`] tells a step's own processes from a
/// helper it left behind by.
pub fn note_step(locks: &[&Path], group: u32) {
    update(locks, |held| {
        held.step_groups.push(group);
        held.handed = true;
    });
}

/// Updates the records of `locks` once a step has ended: groups with no process left are
/// dropped (one whose background processes still run stays).
pub fn step_ended(locks: &[&Path]) {
    update(locks, |_| {});
}

fn update(locks: &[&Path], change: impl Fn(&mut Held)) {
    if let Ok(mut held) = held().lock() {
        for path in locks {
            if let Some(entry) = held.get_mut(*path) {
                change(entry);
                entry.write_record();
            }
        }
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
    Record::read(path).pid
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
        .map(|held| {
            locks
                .iter()
                .filter_map(|p| held.get(*p).map(|h| h.fd))
                .collect()
        })
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
