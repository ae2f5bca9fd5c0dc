//! [`Poller`]: the polling fallback, for network file systems where inotify hears nothing
//! and for homes past the inotify watch limit. Every interval it walks the watched folders
//! and compares each entry's size, inode, mtime and change time to the nanosecond with the
//! last walk:
//! any difference is a change, so a file replaced by one with an older mtime (`rsync -a`,
//! `cp -p`, a restore) or rewritten within the same second is heard. notify's own poller
//! reports only an mtime newer by whole seconds.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Sender, bounded};
use notify::event::{CreateKind, DataChange, ModifyKind, RemoveKind};
use notify::{Event, EventHandler, EventKind, RecursiveMode};

/// What a walk remembers of one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    size: u64,
    inode: u64,
    mtime_ns: i128,
    /// The change time too: a rewrite whose mtime was put back changes only it (issue 18).
    ctime_ns: i128,
    folder: bool,
}

impl Seen {
    fn of(meta: &std::fs::Metadata) -> Seen {
        Seen {
            size: meta.size(),
            inode: meta.ino(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
            folder: meta.is_dir(),
        }
    }
}

type Snapshot = HashMap<PathBuf, Seen>;

/// A polling thread; dropping it stops the thread.
pub(crate) struct Poller {
    stop: Option<Sender<()>>,
    folders: std::sync::Arc<std::sync::Mutex<Vec<(PathBuf, RecursiveMode)>>>,
    thread: Option<JoinHandle<()>>,
}

impl Poller {
    /// Starts polling `folders` every `interval`, sending what changed to `handler`.
    pub(crate) fn start(
        folders: Vec<(PathBuf, RecursiveMode)>,
        interval: Duration,
        mut handler: impl EventHandler,
    ) -> Poller {
        let folders = std::sync::Arc::new(std::sync::Mutex::new(folders));
        let (stop, stopped) = bounded::<()>(0);
        let watched = std::sync::Arc::clone(&folders);
        let thread = std::thread::spawn(move || {
            let list = || watched.lock().map(|f| f.clone()).unwrap_or_default();
            let mut before = snapshot(&list());
            // A disconnected channel (the Poller dropped) ends the loop; a timeout polls.
            while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                stopped.recv_timeout(interval)
            {
                let now = snapshot(&list());
                for event in differences(&before, &now) {
                    handler.handle_event(Ok(event));
                }
                before = now;
            }
        });
        Poller {
            stop: Some(stop),
            folders,
            thread: Some(thread),
        }
    }

    /// Polls one more folder from the next walk on.
    pub(crate) fn watch(&self, dir: &Path, mode: RecursiveMode) {
        if let Ok(mut folders) = self.folders.lock() {
            folders.push((dir.to_path_buf(), mode));
        }
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Every entry under `folders` (links not followed), with the folders themselves.
fn snapshot(folders: &[(PathBuf, RecursiveMode)]) -> Snapshot {
    let mut seen = Snapshot::new();
    for (dir, mode) in folders {
        if let Ok(meta) = std::fs::symlink_metadata(dir) {
            seen.insert(dir.clone(), Seen::of(&meta));
        }
        walk(dir, *mode == RecursiveMode::Recursive, &mut seen);
    }
    seen
}

fn walk(dir: &Path, recursive: bool, seen: &mut Snapshot) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        let path = entry.path();
        if recursive && meta.is_dir() {
            walk(&path, true, seen);
        }
        seen.insert(path, Seen::of(&meta));
    }
}

/// The events that turn `before` into `now`. Pure.
fn differences(before: &Snapshot, now: &Snapshot) -> Vec<Event> {
    let mut events = Vec::new();
    for (path, seen) in now {
        let kind = match before.get(path) {
            None if seen.folder => EventKind::Create(CreateKind::Folder),
            None => EventKind::Create(CreateKind::File),
            Some(old) if old.folder != seen.folder || old.inode != seen.inode => {
                EventKind::Create(if seen.folder {
                    CreateKind::Folder
                } else {
                    CreateKind::File
                })
            }
            // A folder's own size and mtime change with its entries, which speak for
            // themselves.
            Some(old) if !seen.folder && old != seen => {
                EventKind::Modify(ModifyKind::Data(DataChange::Any))
            }
            Some(_) => continue,
        };
        events.push(Event::new(kind).add_path(path.clone()));
    }
    for (path, old) in before {
        if !now.contains_key(path) {
            let kind = if old.folder {
                RemoveKind::Folder
            } else {
                RemoveKind::File
            };
            events.push(Event::new(EventKind::Remove(kind)).add_path(path.clone()));
        }
    }
    events.sort_by(|a, b| a.paths.cmp(&b.paths));
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(size: u64, inode: u64, mtime_ns: i128) -> Seen {
        Seen {
            size,
            inode,
            mtime_ns,
            ctime_ns: 0,
            folder: false,
        }
    }

    fn kinds(before: &Snapshot, now: &Snapshot) -> Vec<(String, EventKind)> {
        differences(before, now)
            .into_iter()
            .map(|e| (e.paths[0].display().to_string(), e.kind))
            .collect()
    }

    #[test]
    fn any_difference_in_size_inode_or_nanosecond_mtime_is_a_change() {
        let p = PathBuf::from;
        let before: Snapshot = [
            (p("older"), seen(5, 1, 2_000_000_000)),
            (p("same-second"), seen(5, 2, 2_000_000_000)),
            (p("restored"), seen(5, 3, 2_000_000_000)),
            (p("untouched"), seen(5, 4, 2_000_000_000)),
            (p("gone"), seen(5, 5, 2_000_000_000)),
        ]
        .into();
        let now: Snapshot = [
            (p("older"), seen(5, 1, 1_000_000_000)),
            (p("same-second"), seen(5, 2, 2_000_000_001)),
            (p("restored"), seen(5, 9, 2_000_000_000)),
            (p("untouched"), seen(5, 4, 2_000_000_000)),
            (p("new"), seen(1, 6, 3_000_000_000)),
        ]
        .into();
        let modified = EventKind::Modify(ModifyKind::Data(DataChange::Any));
        assert_eq!(
            kinds(&before, &now),
            [
                ("gone".to_owned(), EventKind::Remove(RemoveKind::File)),
                ("new".to_owned(), EventKind::Create(CreateKind::File)),
                ("older".to_owned(), modified),
                ("restored".to_owned(), EventKind::Create(CreateKind::File)),
                ("same-second".to_owned(), modified),
            ]
        );
    }
}
