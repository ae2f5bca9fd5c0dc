//! [`InotifyWatcher`]: memsched's own inotify backend (issue 8). It asks the kernel only for
//! what changes a file (no IN_OPEN, IN_CLOSE_NOWRITE or IN_ACCESS, which notify's backend
//! always adds), so reading memories (memsched's hashing, the ingest step) wakes nothing.
//!
//! One thread sleeps in poll(2) on the inotify fd and a stop pipe, with no timeout: idle, it
//! never wakes. It turns each kernel event into the `notify::Event` notify's inotify backend
//! would have sent, so [`super::change::classify`] reads both alike. The watch table is
//! shared: the loop adds watches from its own thread, under the same lock the reader holds
//! while it translates, so no event of a new watch is read before its folder is known.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{self, PipeWriter};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use ::inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use notify::event::{
    AccessKind, AccessMode, CreateKind, DataChange, Flag, MetadataKind, ModifyKind, RemoveKind,
    RenameMode,
};
use notify::{Event, EventHandler, EventKind, RecursiveMode};

/// What every watch asks for: the changes `classify` reads, nothing a reader causes.
const CHANGES: WatchMask = WatchMask::ATTRIB
    .union(WatchMask::CREATE)
    .union(WatchMask::DELETE)
    .union(WatchMask::CLOSE_WRITE)
    .union(WatchMask::MODIFY)
    .union(WatchMask::MOVED_FROM)
    .union(WatchMask::MOVED_TO);
/// What a folder asked for by name adds: its own removal or move (data_dir going away).
/// Folders found below it are not asked, as in notify: their parent reports them.
const SELF: WatchMask = WatchMask::DELETE_SELF.union(WatchMask::MOVE_SELF);
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
pub struct InotifyWatcher {
    table: Arc<Mutex<Table>>,
    /// Closing it wakes the thread to end.
    _stop: PipeWriter,
}

/// One watched folder.
#[derive(Debug)]
struct Entry {
    path: PathBuf,
    wd: WatchDescriptor,
    /// Folders made or moved in below it are watched too.
    recursive: bool,
    /// Asked for by name (not found below another): its own removal is reported.
    named: bool,
}

/// The watches, by descriptor and by path.
#[derive(Debug)]
struct Table {
    watches: Watches,
    by_wd: HashMap<WatchDescriptor, Entry>,
    by_path: HashMap<PathBuf, WatchDescriptor>,
}

impl InotifyWatcher {
    /// Starts the thread that hands `handler` what inotify reports. Fails when no inotify
    /// instance can be had (the per-user instance limit, EMFILE).
    pub fn new<F: EventHandler>(handler: F) -> notify::Result<InotifyWatcher> {
        let inotify = Inotify::init().map_err(notify::Error::io)?;
        let (stop_rx, stop) = io::pipe().map_err(notify::Error::io)?;
        let table = Arc::new(Mutex::new(Table {
            watches: inotify.watches(),
            by_wd: HashMap::new(),
            by_path: HashMap::new(),
        }));
        let shared = table.clone();
        std::thread::Builder::new()
            .name("memsched-inotify".to_owned())
            .spawn(move || run(inotify, &stop_rx, &shared, handler))
            .map_err(notify::Error::io)?;
        Ok(InotifyWatcher { table, _stop: stop })
    }

    /// Watches `dir`, and with `Recursive` every folder below it (links not followed), now
    /// and as folders are made or moved in.
    pub fn watch(&mut self, dir: &Path, mode: RecursiveMode) -> notify::Result<()> {
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
        let mut fds = [
            PollFd::new(inotify.as_fd(), PollFlags::POLLIN),
            PollFd::new(stop.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(e) => {
                handler.handle_event(Err(notify::Error::io(e.into())));
                return;
            }
        }
        if fds[1].revents().is_some_and(|r| !r.is_empty()) {
            return;
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

impl Table {
    /// Watches `dir` (and, `recursive`, every folder below it). `named`: asked for by
    /// name, so a missing folder is an error and its own removal is reported.
    fn watch(&mut self, dir: &Path, recursive: bool, named: bool) -> notify::Result<()> {
        self.add(dir, recursive, named)?;
        if !recursive {
            return Ok(());
        }
        // A folder is watched before its contents are listed, so a folder made meanwhile
        // is either listed here or reported by its parent's watch.
        let mut stack = vec![dir.to_path_buf()];
        while let Some(folder) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&folder) else {
                continue;
            };
            for entry in entries.flatten() {
                // The entry's own type: a link to a folder is not followed.
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    let path = entry.path();
                    match self.add(&path, true, false) {
                        Ok(()) => stack.push(path),
                        // Past the watch limit no folder below is heard: the caller polls.
                        Err(e) if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) => {
                            return Err(e);
                        }
                        // Gone between the listing and the watch (its parent reported
                        // that), or unreadable: the rest of the tree is still heard.
                        Err(e) => log::debug!("not watched: {e}"),
                    }
                }
            }
        }
        Ok(())
    }

    /// Adds (or widens) the watch of one folder.
    fn add(&mut self, dir: &Path, recursive: bool, named: bool) -> notify::Result<()> {
        let old = self.by_path.get(dir).and_then(|wd| self.by_wd.get(wd));
        let recursive = recursive || old.is_some_and(|e| e.recursive);
        let named = named || old.is_some_and(|e| e.named);
        let mask = if named {
            CHANGES | SELF
        } else {
            // Found below a watched folder: it must be a folder, and not through a link.
            CHANGES | WatchMask::ONLYDIR | WatchMask::DONT_FOLLOW
        };
        let wd = self.watches.add(dir, mask).map_err(|e| add_error(e, dir))?;
        // Moves not heard yet (the loop adds a watch while the reader is behind): the path
        // names another folder now, so the old one and its tree are forgotten (the walk
        // adds what the new one holds); or this folder was known under another path.
        if self.by_path.get(dir).is_some_and(|w| *w != wd) {
            // (Not the new folder itself, should it have been known in the old tree.)
            self.forget_below(dir, Some(&wd));
        }
        if let Some(moved) = self.by_wd.get(&wd).filter(|e| e.path != dir) {
            let moved = moved.path.clone();
            self.by_path.remove(&moved);
        }
        self.by_path.insert(dir.to_path_buf(), wd.clone());
        self.by_wd.insert(
            wd.clone(),
            Entry {
                path: dir.to_path_buf(),
                wd,
                recursive,
                named,
            },
        );
        Ok(())
    }

    /// Stops watching `dir` and every folder below it (removed or moved away), but `keep`.
    fn forget_below(&mut self, dir: &Path, keep: Option<&WatchDescriptor>) {
        if !self.by_path.contains_key(dir) {
            return;
        }
        let gone: Vec<WatchDescriptor> = self
            .by_wd
            .values()
            .filter(|e| e.path.starts_with(dir) && Some(&e.wd) != keep)
            .map(|e| e.wd.clone())
            .collect();
        for wd in gone {
            self.forget(&wd);
            // A removed folder's watch is gone already; a moved one's must go.
            let _ = self.watches.remove(wd);
        }
    }

    /// Drops one watch's bookkeeping (the kernel dropped the watch: IN_IGNORED).
    fn forget(&mut self, wd: &WatchDescriptor) {
        if let Some(entry) = self.by_wd.remove(wd)
            && self.by_path.get(&entry.path) == Some(wd)
        {
            self.by_path.remove(&entry.path);
        }
    }

    /// What one kernel event means, as notify's inotify backend says it, into `out`. A
    /// folder made or moved in below a recursive watch is watched before it is reported,
    /// so whoever hears of it hears of the files made in it from then on.
    fn translate(
        &mut self,
        event: &::inotify::Event<&OsStr>,
        out: &mut Vec<notify::Result<Event>>,
    ) {
        let mask = event.mask;
        if mask.contains(EventMask::Q_OVERFLOW) {
            out.push(Ok(Event::new(EventKind::Other).set_flag(Flag::Rescan)));
            return;
        }
        let Some(entry) = self.by_wd.get(&event.wd) else {
            // A watch forgotten already (removed, moved away): its last events.
            return;
        };
        if mask.contains(EventMask::IGNORED) {
            self.forget(&event.wd);
            return;
        }
        let recursive = entry.recursive;
        let path = match event.name {
            Some(name) => entry.path.join(name),
            None => entry.path.clone(),
        };
        let folder = mask.contains(EventMask::ISDIR);
        if folder && mask.intersects(EventMask::MOVED_FROM | EventMask::DELETE) {
            self.forget_below(&path, None);
        }
        if mask.contains(EventMask::DELETE_SELF) {
            self.forget(&event.wd);
        }
        if folder && recursive && mask.intersects(EventMask::CREATE | EventMask::MOVED_TO) {
            match self.watch(&path, true, false) {
                Ok(()) => {}
                Err(e) if matches!(e.kind, notify::ErrorKind::PathNotFound) => {}
                Err(e) => out.push(Err(e)),
            }
        }
        let renamed = mask.intersects(EventMask::MOVED_FROM | EventMask::MOVED_TO);
        for kind in kinds(mask) {
            let mut event_out = Event::new(kind).add_path(path.clone());
            if renamed {
                event_out = event_out.set_tracker(event.cookie as usize);
            }
            out.push(Ok(event_out));
        }
    }
}

/// The notify kinds one kernel event stands for, in the order notify's backend sends them.
/// Each half of a rename stands alone: `classify` ignores the pair.
fn kinds(mask: EventMask) -> Vec<EventKind> {
    let folder = mask.contains(EventMask::ISDIR);
    let table = [
        (
            EventMask::MOVED_FROM,
            EventKind::Modify(ModifyKind::Name(RenameMode::From)),
        ),
        (
            EventMask::MOVED_TO,
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
        ),
        (
            EventMask::MOVE_SELF,
            EventKind::Modify(ModifyKind::Name(RenameMode::From)),
        ),
        (
            EventMask::CREATE,
            EventKind::Create(if folder {
                CreateKind::Folder
            } else {
                CreateKind::File
            }),
        ),
        (
            EventMask::DELETE,
            EventKind::Remove(if folder {
                RemoveKind::Folder
            } else {
                RemoveKind::File
            }),
        ),
        // Only folders asked for by name report their own removal.
        (
            EventMask::DELETE_SELF,
            EventKind::Remove(RemoveKind::Folder),
        ),
        (
            EventMask::MODIFY,
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
        ),
        (
            EventMask::CLOSE_WRITE,
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
        ),
        (
            EventMask::ATTRIB,
            EventKind::Modify(ModifyKind::Metadata(MetadataKind::Any)),
        ),
        // Never asked for (see CHANGES), but said as notify says them should a mask ask.
        (
            EventMask::CLOSE_NOWRITE,
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
        ),
        (
            EventMask::OPEN,
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
        ),
    ];
    table
        .into_iter()
        .filter(|(bit, _)| mask.contains(*bit))
        .map(|(_, kind)| kind)
        .collect()
}

/// A failed inotify_add_watch as notify says it: the watch limit (ENOSPC) is
/// `MaxFilesWatch`, a folder that is not there (or is no folder now) `PathNotFound`.
fn add_error(error: io::Error, dir: &Path) -> notify::Error {
    let kind = match error.raw_os_error().map(Errno::from_raw) {
        Some(Errno::ENOSPC) => notify::ErrorKind::MaxFilesWatch,
        Some(Errno::ENOENT | Errno::ENOTDIR) => notify::ErrorKind::PathNotFound,
        _ => notify::ErrorKind::Io(error),
    };
    notify::Error::new(kind).add_path(dir.to_path_buf())
}

#[cfg(test)]
mod tests {
    //! The backend against the real kernel, in temp folders. "Nothing happened" is proved
    //! with a sentinel: a change made afterwards whose event must come first.

    use super::*;
    use crossbeam_channel::{Receiver, unbounded};
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

    /// The loop may add a watch before the reader has heard a move: the table follows.
    #[test]
    fn a_watch_on_a_folder_replaced_unheard_forgets_the_old_tree() {
        let base = tempfile::tempdir().unwrap();
        let root = base.path().join("root");
        std::fs::create_dir_all(root.join("sub/deep")).unwrap();
        let inotify = Inotify::init().unwrap();
        let mut table = Table {
            watches: inotify.watches(),
            by_wd: HashMap::new(),
            by_path: HashMap::new(),
        };
        table.watch(&root, true, true).unwrap();
        std::fs::rename(root.join("sub"), base.path().join("away")).unwrap();
        std::fs::create_dir_all(root.join("sub/new")).unwrap();
        table.watch(&root.join("sub"), true, false).unwrap();
        let mut paths: Vec<PathBuf> = table.by_path.keys().cloned().collect();
        paths.sort();
        assert_eq!(
            paths,
            [root.clone(), root.join("sub"), root.join("sub/new")]
        );
        assert_eq!(table.by_wd.len(), 3, "{:#?}", table.by_wd);
    }

    #[test]
    fn kernel_masks_map_to_notify_kinds() {
        assert_eq!(
            kinds(EventMask::CREATE | EventMask::ISDIR),
            [EventKind::Create(CreateKind::Folder)]
        );
        assert_eq!(
            kinds(EventMask::DELETE),
            [EventKind::Remove(RemoveKind::File)]
        );
        assert_eq!(
            kinds(EventMask::ATTRIB),
            [EventKind::Modify(ModifyKind::Metadata(MetadataKind::Any))]
        );
        assert_eq!(
            kinds(EventMask::MOVE_SELF),
            [EventKind::Modify(ModifyKind::Name(RenameMode::From))]
        );
        assert_eq!(
            kinds(EventMask::OPEN),
            [EventKind::Access(AccessKind::Open(AccessMode::Any))]
        );
    }
}
