//! [`Table`]: the watch-descriptor table of the inotify backend, by descriptor and by
//! path, and what one kernel event does to it (a folder made below a recursive watch is
//! watched, one removed or moved away forgotten) and means in notify's words.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};

use ::inotify::{EventMask, WatchDescriptor, WatchMask, Watches};
use nix::errno::Errno;
use notify::Event;
use notify::event::{EventKind, Flag};

use super::kinds::kinds;

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
pub(super) struct Table {
    watches: Watches,
    by_wd: HashMap<WatchDescriptor, Entry>,
    by_path: HashMap<PathBuf, WatchDescriptor>,
}

impl Table {
    /// No watch yet; `watches` adds them to one inotify instance.
    pub(super) fn new(watches: Watches) -> Table {
        Table {
            watches,
            by_wd: HashMap::new(),
            by_path: HashMap::new(),
        }
    }

    /// Watches `dir` (and, `recursive`, every folder below it). `named`: asked for by
    /// name, so a missing folder is an error and its own removal is reported.
    pub(super) fn watch(&mut self, dir: &Path, recursive: bool, named: bool) -> notify::Result<()> {
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
    pub(super) fn translate(
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
            // notify's kinds for a rename say nothing of folders: the kernel did.
            event_out = event_out.set_info(if folder {
                crate::watch::change::FOLDER_INFO
            } else {
                crate::watch::change::FILE_INFO
            });
            out.push(Ok(event_out));
        }
    }
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
    use super::*;
    use ::inotify::Inotify;

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
}
