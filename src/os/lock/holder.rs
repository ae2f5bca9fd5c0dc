//! Who really holds a lock, as the kernel says (issue 20 item 2). The pid written in a
//! lock file is only who took it last: an idle watcher's file still names it, and after a
//! `kill -9` it names the dead process while the step that inherited the lock holds it.
//! Nothing here takes or tests the lock by taking it, so looking never makes a run skip.
//!
//! A helper a step started in a session of its own keeps the lock it inherited after the
//! step and the run that took it are gone ([`leftover`], issue 18 item 12).

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

/// The processes holding a lock that neither the run that took it nor any step it was
/// handed to holds any more: helpers a step of a killed run left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    /// Each holder's pid and command line.
    pub holders: Vec<(u32, String)>,
    /// The lock file's device and inode, as examined.
    pub file: (u64, u64),
}

impl Leftover {
    /// "pid 441 (sleep 300)", each holder so.
    #[must_use]
    pub fn describe(&self) -> String {
        let each: Vec<String> = self
            .holders
            .iter()
            .map(|(pid, command)| format!("pid {pid} ({command})"))
            .collect();
        each.join(", ")
    }

    /// The holders' pids, as text.
    #[must_use]
    pub fn pids(&self) -> Vec<String> {
        self.holders
            .iter()
            .map(|(pid, _)| pid.to_string())
            .collect()
    }
}

/// The helpers holding the lock at `path` when they are all that holds it: the kernel
/// says the lock was taken by the process the file names (so it is a lock memsched took,
/// not a script's own), that process no longer holds it (a `kill -9`), the file says it
/// was handed to steps, and no process is left in their process groups. A step still
/// running, or anything else, keeps the lock: `None`.
#[must_use]
pub fn leftover(path: &Path) -> Option<Leftover> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    let key = key(meta.dev(), meta.ino());
    let record = super::Record::read(path);
    let taker = record.pid?;
    if !record.handed {
        return None;
    }
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    let recorded: Vec<u32> = locks.lines().filter_map(|l| flock_pid(l, &key)).collect();
    if recorded.is_empty() || recorded.iter().any(|pid| *pid != taker) || holds(taker, &key) {
        return None;
    }
    let live = processes();
    if live
        .iter()
        .any(|(_, group)| record.step_groups.contains(group))
    {
        return None;
    }
    let holders: Vec<(u32, String)> = live
        .iter()
        .filter(|(pid, _)| holds(*pid, &key))
        .map(|(pid, _)| (*pid, command_line(*pid)))
        .collect();
    (!holders.is_empty()).then(|| Leftover {
        holders,
        file: (meta.dev(), meta.ino()),
    })
}

/// Every live process (zombies hold nothing and run nothing) with its process group.
fn processes() -> Vec<(u32, u32)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut live: Vec<(u32, u32)> = entries
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // "pid (comm) S ppid pgrp …": the command may hold anything but the last ')'.
            let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
            let state = fields.next()?;
            let group = fields.nth(1)?.parse().ok()?;
            (state != "Z" && state != "X").then_some((pid, group))
        })
        .collect();
    live.sort_unstable();
    live
}

/// A process's command line, its arguments joined by spaces (cut for a message).
fn command_line(pid: u32) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let words: Vec<String> = raw
        .split(|b| *b == 0)
        .filter(|w| !w.is_empty())
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect();
    let line = words.join(" ");
    if line.chars().count() > 200 {
        line.chars().take(200).chain("…".chars()).collect()
    } else {
        line
    }
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

    /// A pid no process has any more (a child already reaped).
    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }

    #[test]
    fn a_lock_a_script_took_itself_is_no_leftover_whatever_the_file_says() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ingest.lock");
        let dead = dead_pid();
        std::fs::write(&path, format!("{dead}\nstep_groups {dead}\n")).unwrap();
        // A script following the documented lock: its own open, its own flock.
        let file = std::fs::File::open(&path).unwrap();
        let _held = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).unwrap();
        assert_eq!(leftover(&path), None);
    }

    #[test]
    fn the_record_names_the_taker_and_the_step_groups() {
        let record = super::super::Record::parse("12\nstep_groups 40 41\n");
        assert_eq!(record.pid, Some(12));
        assert_eq!(record.step_groups, [40, 41]);
        assert!(record.handed);
        let ended = super::super::Record::parse("12\nstep_groups \n");
        assert!(ended.handed && ended.step_groups.is_empty());
        let old = super::super::Record::parse("12\n");
        assert_eq!(
            (old.pid, old.step_groups.len(), old.handed),
            (Some(12), 0, false)
        );
    }
}
