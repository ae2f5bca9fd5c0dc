//! [`Change`]: what one notify event means for the loop, and [`Roots`], where the watcher
//! looks. The translation is pure: an event and the roots in, changes out.

use std::path::{Path, PathBuf};

use globset::GlobSet;
use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind, RenameMode};
use notify::{Event, EventKind as NotifyKind, RecursiveMode};

use crate::model::event_kind::EventKind;
use crate::model::scope::Scope;

/// One thing a notify event means for the loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// A file or folder under data_dir (relative path) or directly in state_dir (file name).
    File {
        scope: Scope,
        rel: PathBuf,
        kind: EventKind,
        path: PathBuf,
        /// Whether the path is a folder, when the event says (inotify does for creates).
        folder: Option<bool>,
        /// The writer closed the file after writing it, or it was renamed into place: it
        /// is complete now, whatever its mtime says.
        settled: bool,
    },
    /// A file matching upload `sources` (relative to the pipeline home), or a folder that
    /// may hold some (`folder`), changed.
    Source {
        rel: PathBuf,
        kind: EventKind,
        folder: bool,
    },
    /// The rules file was written, replaced or removed.
    Rules,
    /// The pause marker appeared or went.
    Pause,
    /// The watcher's own liveness canary came back.
    Canary,
    /// The watcher lost events (the kernel queue overflowed): reconcile everything.
    Rescan,
    /// data_dir itself was removed, moved away, or made again: its watches are gone or
    /// point at the wrong folder.
    Root,
}

/// Where things are, as the watcher sees them (canonical paths).
#[derive(Debug, Clone)]
pub(crate) struct Roots {
    pub data_dir: PathBuf,
    /// data_dir as given, when it is a link: re-pointing it (`ln -sfn D2 Data`) replaces
    /// data_dir.
    pub data_link: Option<PathBuf>,
    pub state_dir: PathBuf,
    /// The pipeline home: upload `sources` are relative to it.
    pub home: PathBuf,
    /// The rules file as it resolves now (links followed).
    pub rules_file: PathBuf,
    /// The rules path as given, when it is a link (a dotfiles repository, say): re-pointing
    /// it is an edit of the rules too.
    pub rules_link: Option<PathBuf>,
    pub pause_file: PathBuf,
    pub canary_file: PathBuf,
    /// The folders upload `sources` name (see [`source_folders`]).
    pub source_dirs: Vec<(PathBuf, RecursiveMode)>,
    /// The `sources` globs, relative to `home`.
    pub sources: GlobSet,
}

impl Roots {
    /// The folders to watch, each once: data_dir recursively, the folders of the state
    /// files and the rules not, and the folders of upload sources as their globs need.
    /// Folders, not files: writers replace files by rename.
    #[must_use]
    pub(crate) fn folders(&self) -> Vec<(PathBuf, RecursiveMode)> {
        let mut out = vec![(self.data_dir.clone(), RecursiveMode::Recursive)];
        // data_dir's parent, to hear data_dir itself go and come back.
        let plain = [
            self.data_dir.parent(),
            self.data_link.as_deref().and_then(Path::parent),
            Some(self.state_dir.as_path()),
            self.rules_file.parent(),
            self.rules_link.as_deref().and_then(Path::parent),
        ]
        .into_iter()
        .flatten()
        .map(|d| (d.to_path_buf(), RecursiveMode::NonRecursive));
        for (dir, mode) in plain.chain(self.source_dirs.iter().cloned()) {
            let covered = out.iter().any(|(d, m)| {
                (*d == dir && (*m == mode || *m == RecursiveMode::Recursive))
                    || (*m == RecursiveMode::Recursive && dir.starts_with(d))
            });
            if !covered {
                out.retain(|(d, _)| !(mode == RecursiveMode::Recursive && d.starts_with(&dir)));
                out.push((dir, mode));
            }
        }
        out
    }
}

/// The folders a set of `sources` globs (relative to `home`) can match in, as watches.
#[must_use]
pub(crate) fn source_folders(home: &Path, globs: &[String]) -> Vec<(PathBuf, RecursiveMode)> {
    crate::config::sources::folders(globs)
        .into_iter()
        .map(|f| {
            let mode = if f.recursive {
                RecursiveMode::Recursive
            } else {
                RecursiveMode::NonRecursive
            };
            (home.join(f.rel), mode)
        })
        .collect()
}

/// What `event` means: zero or more changes. Pure.
/// The info memsched's inotify backend gives an event about a folder (the kernel's
/// IN_ISDIR), which notify's rename and removal kinds cannot carry: a folder renamed or
/// moved out of data_dir takes its memories with it (issue 17).
pub(crate) const FOLDER_INFO: &str = "folder";

/// The info memsched's inotify backend gives an event about anything but a folder: the
/// kernel said so, so a renamed temporary file is never taken for a new folder (issue 20
/// item 14). An event with neither info (the poll backend) leaves it open.
pub(crate) const FILE_INFO: &str = "file";

#[must_use]
pub(crate) fn classify(event: &Event, roots: &Roots) -> Vec<Change> {
    if event.need_rescan() {
        return vec![Change::Rescan];
    }
    // (kind, folder, settled) of what happened to each path.
    let (kind, folder, settled) = match event.kind {
        NotifyKind::Create(CreateKind::Folder) => (EventKind::Create, Some(true), false),
        NotifyKind::Create(CreateKind::File) => (EventKind::Create, Some(false), false),
        NotifyKind::Create(_) => (EventKind::Create, None, false),
        // inotify reports each half of a rename on its own as well; the pair adds nothing.
        NotifyKind::Modify(ModifyKind::Name(RenameMode::Both)) => return Vec::new(),
        NotifyKind::Modify(ModifyKind::Name(RenameMode::To)) => (EventKind::Rename, None, true),
        NotifyKind::Modify(ModifyKind::Name(_)) => (EventKind::Rename, None, false),
        NotifyKind::Access(AccessKind::Close(AccessMode::Write)) => {
            (EventKind::Modify, Some(false), true)
        }
        NotifyKind::Access(_) => return Vec::new(),
        NotifyKind::Modify(_) | NotifyKind::Any | NotifyKind::Other => {
            (EventKind::Modify, None, false)
        }
        NotifyKind::Remove(_) => (EventKind::Remove, None, false),
    };
    let folder = folder.or(match event.info() {
        Some(FOLDER_INFO) => Some(true),
        Some(FILE_INFO) => Some(false),
        _ => None,
    });
    event
        .paths
        .iter()
        .filter_map(|path| classify_path(path, kind, folder, settled, roots))
        .collect()
}

fn classify_path(
    path: &Path,
    kind: EventKind,
    folder: Option<bool>,
    settled: bool,
    roots: &Roots,
) -> Option<Change> {
    if path == roots.rules_file || roots.rules_link.as_deref() == Some(path) {
        return Some(Change::Rules);
    }
    if path == roots.pause_file {
        return Some(Change::Pause);
    }
    if path == roots.canary_file {
        return Some(Change::Canary);
    }
    let name = path.file_name()?.to_string_lossy();
    // Temporary files of memsched's own atomic writes, and other watchers' canaries.
    if name.starts_with(".memsched-") {
        return None;
    }
    if path == roots.data_dir || roots.data_link.as_deref() == Some(path) {
        return match kind {
            EventKind::Modify => None,
            EventKind::Create | EventKind::Remove | EventKind::Rename => Some(Change::Root),
        };
    }
    if let Ok(rel) = path.strip_prefix(&roots.data_dir) {
        return Some(Change::File {
            scope: Scope::Data,
            rel: rel.to_path_buf(),
            kind,
            path: path.to_path_buf(),
            folder,
            settled,
        });
    }
    if let Some(source) = classify_source(path, kind, folder, roots) {
        return Some(source);
    }
    if path.parent() == Some(roots.state_dir.as_path()) {
        return Some(Change::File {
            scope: Scope::State,
            rel: PathBuf::from(path.file_name()?),
            kind,
            path: path.to_path_buf(),
            folder,
            settled,
        });
    }
    None
}

/// A path under the home that upload `sources` match, or a new folder on the way to one
/// (whose watch must be added before its files make events).
fn classify_source(
    path: &Path,
    kind: EventKind,
    folder: Option<bool>,
    roots: &Roots,
) -> Option<Change> {
    let rel = path.strip_prefix(&roots.home).ok()?;
    if roots.sources.is_match(rel) {
        return Some(Change::Source {
            rel: rel.to_path_buf(),
            kind,
            folder: false,
        });
    }
    let arrived = matches!(kind, EventKind::Create | EventKind::Rename) && folder != Some(false);
    let on_the_way = roots
        .source_dirs
        .iter()
        .any(|(dir, _)| dir.starts_with(path) || path.starts_with(dir));
    (arrived && on_the_way).then(|| Change::Source {
        rel: rel.to_path_buf(),
        kind,
        folder: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{Flag, RemoveKind};
    use pretty_assertions::assert_eq;

    fn roots() -> Roots {
        let mut sources = globset::GlobSetBuilder::new();
        sources.add(globset::Glob::new("index/*.json").unwrap());
        Roots {
            data_dir: PathBuf::from("/p/Data"),
            data_link: Some(PathBuf::from("/home/u/Data")),
            state_dir: PathBuf::from("/p"),
            home: PathBuf::from("/p"),
            rules_file: PathBuf::from("/p/watch-rules.toml"),
            rules_link: Some(PathBuf::from("/etc/memsched/rules.toml")),
            pause_file: PathBuf::from("/p/Data/.memsched-pause"),
            canary_file: PathBuf::from("/p/Data/.memsched-canary-1"),
            source_dirs: source_folders(Path::new("/p"), &["index/*.json".to_owned()]),
            sources: sources.build().unwrap(),
        }
    }

    fn event(kind: NotifyKind, paths: &[&str]) -> Event {
        paths
            .iter()
            .fold(Event::new(kind), |e, p| e.add_path(PathBuf::from(p)))
    }

    fn file(scope: Scope, rel: &str, kind: EventKind, path: &str) -> Change {
        Change::File {
            scope,
            rel: PathBuf::from(rel),
            kind,
            path: PathBuf::from(path),
            folder: None,
            settled: false,
        }
    }

    fn with(change: Change, is_folder: Option<bool>, is_settled: bool) -> Change {
        match change {
            Change::File {
                scope,
                rel,
                kind,
                path,
                ..
            } => Change::File {
                scope,
                rel,
                kind,
                path,
                folder: is_folder,
                settled: is_settled,
            },
            other => other,
        }
    }

    #[test]
    fn events_map_to_scoped_changes() {
        let r = roots();
        assert_eq!(
            classify(
                &event(NotifyKind::Create(CreateKind::File), &["/p/Data/a/b.txt"]),
                &r
            ),
            [with(
                file(Scope::Data, "a/b.txt", EventKind::Create, "/p/Data/a/b.txt"),
                Some(false),
                false
            )]
        );
        assert_eq!(
            classify(
                &event(
                    NotifyKind::Remove(RemoveKind::File),
                    &["/p/task_queue.json"]
                ),
                &r
            ),
            [file(
                Scope::State,
                "task_queue.json",
                EventKind::Remove,
                "/p/task_queue.json"
            )]
        );
    }

    #[test]
    fn a_closed_or_renamed_in_file_is_settled_and_the_rename_pair_adds_nothing() {
        let r = roots();
        let closed = NotifyKind::Access(AccessKind::Close(AccessMode::Write));
        assert_eq!(
            classify(&event(closed, &["/p/Data/b.txt"]), &r),
            [with(
                file(Scope::Data, "b.txt", EventKind::Modify, "/p/Data/b.txt"),
                Some(false),
                true
            )]
        );
        let to = NotifyKind::Modify(ModifyKind::Name(RenameMode::To));
        assert_eq!(
            classify(&event(to, &["/p/Data/b.txt"]), &r),
            [with(
                file(Scope::Data, "b.txt", EventKind::Rename, "/p/Data/b.txt"),
                None,
                true
            )]
        );
        let from = NotifyKind::Modify(ModifyKind::Name(RenameMode::From));
        assert_eq!(
            classify(&event(from, &["/p/Data/.b.swp"]), &r),
            [file(
                Scope::Data,
                ".b.swp",
                EventKind::Rename,
                "/p/Data/.b.swp"
            )]
        );
        let both = NotifyKind::Modify(ModifyKind::Name(RenameMode::Both));
        assert!(classify(&event(both, &["/p/Data/.b.swp", "/p/Data/b.txt"]), &r).is_empty());
        let read = NotifyKind::Access(AccessKind::Close(AccessMode::Read));
        assert!(classify(&event(read, &["/p/Data/b.txt"]), &r).is_empty());
    }

    #[test]
    fn special_files_sources_and_noise_are_recognised() {
        let r = roots();
        let modify = NotifyKind::Modify(ModifyKind::Any);
        assert_eq!(
            classify(&event(modify, &["/p/watch-rules.toml"]), &r),
            [Change::Rules]
        );
        assert_eq!(
            classify(&event(modify, &["/etc/memsched/rules.toml"]), &r),
            [Change::Rules],
            "a link re-pointed"
        );
        assert_eq!(
            classify(&event(modify, &["/p/Data/.memsched-pause"]), &r),
            [Change::Pause]
        );
        assert_eq!(
            classify(&event(modify, &["/p/Data/.memsched-canary-1"]), &r),
            [Change::Canary]
        );
        assert_eq!(
            classify(&event(modify, &["/p/index/memory.json"]), &r),
            [Change::Source {
                rel: PathBuf::from("index/memory.json"),
                kind: EventKind::Modify,
                folder: false
            }]
        );
        assert_eq!(
            classify(
                &event(NotifyKind::Create(CreateKind::Folder), &["/p/index"]),
                &r
            ),
            [Change::Source {
                rel: PathBuf::from("index"),
                kind: EventKind::Create,
                folder: true
            }]
        );
        assert!(classify(&event(modify, &["/p/.memsched-x1.tmp"]), &r).is_empty());
        assert!(
            classify(&event(modify, &["/p/sub/deeper.json"]), &r).is_empty(),
            "state_dir is not recursive"
        );
        let rescan = Event::new(NotifyKind::Other).set_flag(Flag::Rescan);
        assert_eq!(classify(&rescan, &r), [Change::Rescan]);
        let gone = NotifyKind::Remove(RemoveKind::Folder);
        assert_eq!(classify(&event(gone, &["/p/Data"]), &r), [Change::Root]);
        let back = NotifyKind::Create(CreateKind::Folder);
        assert_eq!(classify(&event(back, &["/p/Data"]), &r), [Change::Root]);
        assert!(classify(&event(modify, &["/p/Data"]), &r).is_empty());
        let repointed = NotifyKind::Modify(ModifyKind::Name(RenameMode::To));
        assert_eq!(
            classify(&event(repointed, &["/home/u/Data"]), &r),
            [Change::Root],
            "data_dir's link re-pointed"
        );
    }

    #[test]
    fn folders_are_watched_once() {
        let r = roots();
        assert_eq!(
            r.folders(),
            [
                (PathBuf::from("/p/Data"), RecursiveMode::Recursive),
                (PathBuf::from("/p"), RecursiveMode::NonRecursive),
                (PathBuf::from("/home/u"), RecursiveMode::NonRecursive),
                (PathBuf::from("/etc/memsched"), RecursiveMode::NonRecursive),
                (PathBuf::from("/p/index"), RecursiveMode::NonRecursive),
            ]
        );
    }
}
