//! [`InotifyWatcher`]: memsched's own inotify backend (issue 8). It asks the kernel only for
//! what changes a file (no IN_OPEN, IN_CLOSE_NOWRITE or IN_ACCESS, which notify's backend
//! always adds), so reading memories (memsched's hashing, the ingest step) wakes nothing.
//!
//! One thread sleeps in poll(2) on the inotify fd and a stop pipe, with no timeout: idle, it
//! never wakes. It turns each kernel event into the `notify::Event` notify's inotify backend
//! would have sent, so [`super::change::classify`] reads both alike. The watch table is
//! shared: the loop adds watches from its own thread, under the same lock the reader holds
//! while it translates, so no event of a new watch is read before its folder is known.
//! This room holds the watcher and its reading thread; `table` the watch-descriptor table
//! and what each kernel event does to it, `kinds` what a kernel mask means in notify's words.

mod kinds;
mod table;

use std::io::{self, PipeWriter};
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use ::inotify::Inotify;
use nix::poll::PollFlags;
use notify::{EventHandler, RecursiveMode};

use super::sleep::{self, Woken};
use table::Table;

/// A storm drains in few reads: an event is 16 bytes plus its name.
const BUFFER: usize = 64 * 1024;

/// A running inotify watcher; dropping it stops its thread, which then frees its watches.
///
/// The fields drop in this order on purpose: the table's reference to the inotify fd goes
/// first, then the stop pipe closes and wakes the thread, which holds the last reference
/// and closes the fd itself. Closing an inotify fd waits for the kernel to retire its
/// watches (milliseconds); the loop, which drops the watcher to start a new one, does not
/// wait for that, as it did not with notify's backend.
#[derive(Debug)]
pub(crate) struct InotifyWatcher {
    table: Arc<Mutex<Table>>,
    /// Closing it wakes the thread to end.
    _stop: PipeWriter,
}

impl InotifyWatcher {
    /// Starts the thread that hands `handler` what inotify reports. Fails when no inotify
    /// instance can be had (the per-user instance limit, EMFILE).
    pub(crate) fn new<F: EventHandler>(handler: F) -> notify::Result<InotifyWatcher> {
        let inotify = Inotify::init().map_err(notify::Error::io)?;
        let (stop_rx, stop) = io::pipe().map_err(notify::Error::io)?;
        let table = Arc::new(Mutex::new(Table::new(inotify.watches())));
        let shared = table.clone();
        std::thread::Builder::new()
            .name("memsched-inotify".to_owned())
            .spawn(move || run(inotify, &stop_rx, &shared, handler))
            .map_err(notify::Error::io)?;
        Ok(InotifyWatcher { table, _stop: stop })
    }

    /// Watches `dir`, and with `Recursive` every folder below it (links not followed), now
    /// and as folders are made or moved in.
    pub(crate) fn watch(&mut self, dir: &Path, mode: RecursiveMode) -> notify::Result<()> {
        let dir = std::path::absolute(dir).map_err(notify::Error::io)?;
        lock(&self.table).watch(&dir, mode == RecursiveMode::Recursive, true)
    }
}

fn lock(table: &Mutex<Table>) -> std::sync::MutexGuard<'_, Table> {
    table.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The thread: sleep until inotify or the stop pipe has something, translate, hand over.
fn run<F: EventHandler>(
    mut inotify: Inotify,
    stop: &io::PipeReader,
    table: &Mutex<Table>,
    mut handler: F,
) {
    let mut buffer = vec![0u8; BUFFER];
    let mut out = Vec::new();
    loop {
        match sleep::until_ready(inotify.as_fd(), PollFlags::POLLIN, stop) {
            Ok(Woken::Ready) => {}
            Ok(Woken::Stopped) => return,
            Err(e) => {
                handler.handle_event(Err(notify::Error::io(e.into())));
                return;
            }
        }
        match inotify.read_events(&mut buffer) {
            Ok(events) => {
                let mut table = lock(table);
                for event in events {
                    table.translate(&event, &mut out);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => {
                handler.handle_event(Err(notify::Error::io(e)));
                return;
            }
        }
        // Handed over with the table free: the loop may be adding a watch meanwhile.
        for event in out.drain(..) {
            handler.handle_event(event);
        }
    }
}

#[cfg(test)]
mod tests {
    //! The backend against the real kernel, in temp folders. "Nothing happened" is proved
    //! with a sentinel: a change made afterwards whose event must come first.

    use super::*;
    use crossbeam_channel::{Receiver, unbounded};
    use notify::event::{
        AccessKind, AccessMode, CreateKind, DataChange, ModifyKind, RemoveKind, RenameMode,
    };
    use notify::{Event, EventKind};
    use std::time::{Duration, Instant};

    const DEADLINE: Duration = Duration::from_secs(10);

    fn start(dir: &Path, mode: RecursiveMode) -> (InotifyWatcher, Receiver<notify::Result<Event>>) {
        let (tx, rx) = unbounded();
        let mut watcher = InotifyWatcher::new(move |e| {
            let _ = tx.send(e);
        })
        .unwrap();
        watcher.watch(dir, mode).unwrap();
        (watcher, rx)
    }

    /// Events up to and including the first that `last` accepts; fails past the deadline
    /// with every event seen.
    fn until(
        rx: &Receiver<notify::Result<Event>>,
        mut last: impl FnMut(&Event) -> bool,
    ) -> Vec<Event> {
        let deadline = Instant::now() + DEADLINE;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(Ok(event)) => {
                    let done = last(&event);
                    seen.push(event);
                    if done {
                        return seen;
                    }
                }
                Ok(Err(e)) => panic!("watcher error {e}; seen {seen:#?}"),
                Err(timeout) => panic!("{timeout}: the awaited event never came; seen {seen:#?}"),
            }
        }
    }

    fn is(event: &Event, kind: EventKind, path: &Path) -> bool {
        event.kind == kind && event.paths == [path]
    }

    const CREATED: EventKind = EventKind::Create(CreateKind::File);
    const WRITTEN: EventKind = EventKind::Access(AccessKind::Close(AccessMode::Write));

    /// Makes `name` in `dir` and waits for its creation: everything before it comes back.
    fn sentinel(rx: &Receiver<notify::Result<Event>>, dir: &Path, name: &str) -> Vec<Event> {
        let path = dir.join(name);
        std::fs::write(&path, "s").unwrap();
        let mut seen = until(rx, |e| is(e, CREATED, &path));
        seen.pop();
        seen
    }

    #[test]
    fn reading_a_file_is_no_event_and_writing_one_is_a_modify_and_a_close() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("memory.txt");
        std::fs::write(&file, "before the watch").unwrap();
        let (_watcher, rx) = start(dir.path(), RecursiveMode::Recursive);
        for _ in 0..50 {
            assert_eq!(std::fs::read_to_string(&file).unwrap(), "before the watch");
        }
        assert_eq!(sentinel(&rx, dir.path(), "s1"), [], "reads were heard");

        std::fs::write(&file, "written").unwrap();
        let seen = until(&rx, |e| is(e, WRITTEN, &file));
        assert!(
            seen.iter().any(|e| is(
                e,
                EventKind::Modify(ModifyKind::Data(DataChange::Any)),
                &file
            )),
            "{seen:#?}"
        );
    }

    #[test]
    fn folders_below_made_before_or_after_the_watch_are_heard() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("old/deep")).unwrap();
        let (_watcher, rx) = start(dir.path(), RecursiveMode::Recursive);
        let old = dir.path().join("old/deep/a.txt");
        std::fs::write(&old, "a").unwrap();
        until(&rx, |e| is(e, CREATED, &old));

        let new = dir.path().join("new");
        std::fs::create_dir(&new).unwrap();
        until(&rx, |e| is(e, EventKind::Create(CreateKind::Folder), &new));
        // Its watch was in place before its creation was handed over.
        let inside = new.join("b.txt");
        std::fs::write(&inside, "b").unwrap();
        until(&rx, |e| is(e, CREATED, &inside));
    }

    #[test]
    fn a_plain_watch_hears_its_folder_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("below")).unwrap();
        let (_watcher, rx) = start(dir.path(), RecursiveMode::NonRecursive);
        std::fs::write(dir.path().join("below/x.txt"), "x").unwrap();
        std::fs::create_dir(dir.path().join("made")).unwrap();
        std::fs::write(dir.path().join("made/y.txt"), "y").unwrap();
        let seen = sentinel(&rx, dir.path(), "s");
        assert_eq!(
            seen.iter().map(|e| e.paths.clone()).collect::<Vec<_>>(),
            [[dir.path().join("made")]],
            "{seen:#?}"
        );
    }

    #[test]
    fn a_rename_is_reported_in_halves_and_a_moved_folder_is_followed() {
        let base = tempfile::tempdir().unwrap();
        let root = base.path().join("root");
        let away = base.path().join("away");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::create_dir_all(away.join("incoming")).unwrap();
        let (_watcher, rx) = start(&root, RecursiveMode::Recursive);

        let (from, to) = (root.join(".a.swp"), root.join("a.txt"));
        std::fs::write(&from, "a").unwrap();
        std::fs::rename(&from, &to).unwrap();
        let seen = until(&rx, |e| {
            is(e, EventKind::Modify(ModifyKind::Name(RenameMode::To)), &to)
        });
        let halves: Vec<&Event> = seen
            .iter()
            .filter(|e| e.attrs.tracker().is_some())
            .collect();
        assert_eq!(halves.len(), 2, "{seen:#?}");
        assert!(is(
            halves[0],
            EventKind::Modify(ModifyKind::Name(RenameMode::From)),
            &from
        ));
        assert_eq!(halves[0].attrs.tracker(), halves[1].attrs.tracker());

        // A folder moved in is watched as it arrives; one moved out is heard no more.
        std::fs::rename(away.join("incoming"), root.join("incoming")).unwrap();
        std::fs::rename(root.join("sub"), away.join("sub")).unwrap();
        let moved_out = away.join("sub");
        until(&rx, |e| {
            is(
                e,
                EventKind::Modify(ModifyKind::Name(RenameMode::From)),
                &root.join("sub"),
            )
        });
        std::fs::write(moved_out.join("gone.txt"), "unheard").unwrap();
        let inside = root.join("incoming/c.txt");
        std::fs::write(&inside, "c").unwrap();
        let seen = until(&rx, |e| is(e, CREATED, &inside));
        assert!(
            !seen
                .iter()
                .any(|e| e.paths.iter().any(|p| p.ends_with("gone.txt"))),
            "{seen:#?}"
        );
    }

    #[test]
    fn the_watched_folder_going_is_a_remove_and_a_missing_one_is_not_found() {
        let base = tempfile::tempdir().unwrap();
        let root = base.path().join("Data");
        std::fs::create_dir(&root).unwrap();
        let (mut watcher, rx) = start(&root, RecursiveMode::Recursive);
        std::fs::remove_dir(&root).unwrap();
        until(&rx, |e| is(e, EventKind::Remove(RemoveKind::Folder), &root));
        let missing = watcher.watch(&root, RecursiveMode::Recursive).unwrap_err();
        assert!(
            matches!(missing.kind, notify::ErrorKind::PathNotFound),
            "{missing:?}"
        );
    }

    #[test]
    fn a_watch_added_while_running_is_heard_and_dropping_ends_the_thread() {
        let base = tempfile::tempdir().unwrap();
        let (a, b) = (base.path().join("a"), base.path().join("b"));
        std::fs::create_dir(&a).unwrap();
        std::fs::create_dir(&b).unwrap();
        let (mut watcher, rx) = start(&a, RecursiveMode::NonRecursive);
        sentinel(&rx, &a, "s");
        watcher.watch(&b, RecursiveMode::NonRecursive).unwrap();
        sentinel(&rx, &b, "s");
        drop(watcher);
        // The handler goes with the thread: the channel closes.
        let deadline = Instant::now() + DEADLINE;
        while rx.recv_deadline(deadline).is_ok() {}
        assert!(Instant::now() < deadline, "the thread outlived its watcher");
    }
}
