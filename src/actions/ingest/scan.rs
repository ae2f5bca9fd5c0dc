//! The ingest scan: which memory files there are to look at, with their stats. All of
//! data_dir for a walk; only the changed paths for an event run, looked up side by side
//! from the open folder, with the stats the watcher already read taken on trust.

use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::hints::WatcherHints;
use crate::actions::walk;
use crate::config::rules::IngestConfig;
use crate::error::{Error, Result};
use crate::model::file_key;
use crate::state::stat::Stat;

/// Changed paths one thread looks at, at least, in an event run.
const PER_THREAD: usize = 1024;

/// What the scan found, before any decision.
#[derive(Debug, Default)]
pub struct Scan {
    pub(super) found: Vec<Found>,
    pub(super) unreadable: Vec<(String, String)>,
    /// `None` for a walk of all of data_dir; else the changed paths (relative) that are
    /// gone.
    pub(super) gone: Option<Vec<PathBuf>>,
}

/// A file found by the scan: only its relative path and stat, so a walk of 100,000 files
/// holds no more than that.
#[derive(Debug)]
pub(super) struct Found {
    pub(super) rel: PathBuf,
    pub(super) stat: Stat,
    /// A hard link of a file whose writer the watcher heard finish (see `twins`): as
    /// complete as that file.
    pub(super) heard: bool,
}

/// Finds the memory files to look at: all of data_dir (`hints.changed` is `None`), or only the
/// changed paths (relative to data_dir): a file is looked at when the ingest globs
/// take it, a folder is walked, and a path that is gone is checked against the records.
/// Only a missing data_dir is an error; anything unreadable below it is listed and
/// skipped.
pub fn scan(data_dir: &Path, config: &IngestConfig, hints: &WatcherHints) -> Result<Scan> {
    match std::fs::metadata(data_dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(Error::Scan {
                path: data_dir.to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotADirectory,
                    "data_dir is not a folder",
                ),
            });
        }
        Err(source) => {
            return Err(Error::Scan {
                path: data_dir.to_path_buf(),
                source,
            });
        }
    }
    let mut found = Vec::new();
    let mut visit = |rel: PathBuf, meta: &std::fs::Metadata| {
        found.push(Found {
            rel,
            stat: Stat::of(meta),
            heard: false,
        });
    };
    let Some(changed) = hints.changed.as_deref() else {
        let unreadable = walk::memory_files(data_dir, Path::new(""), config, &mut visit);
        return Ok(Scan {
            found,
            unreadable,
            gone: None,
        });
    };
    let base = Base::new(data_dir);
    // A storm names thousands of paths, each a stat and two glob matches: side by side
    // on every core (issue 8: the storm's run should start within the debounce).
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .min(changed.len().div_ceil(PER_THREAD))
        .max(1);
    let parts: Vec<Looked> = if threads == 1 {
        vec![look_at(&base, config, changed, hints)]
    } else {
        std::thread::scope(|s| {
            let handles: Vec<_> = changed
                .chunks(changed.len().div_ceil(threads))
                .map(|chunk| s.spawn(|| look_at(&base, config, chunk, hints)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("looking at paths does not panic"))
                .collect()
        })
    };
    let (mut unreadable, mut gone) = (Vec::new(), Vec::new());
    for part in parts {
        found.extend(part.found);
        unreadable.extend(part.unreadable);
        gone.extend(part.gone);
    }
    // A folder and a file in it may both have changed: each file is looked at once.
    found.sort_unstable_by(|a, b| a.rel.as_os_str().cmp(b.rel.as_os_str()));
    found.dedup_by(|a, b| a.rel == b.rel);
    gone.sort_unstable();
    gone.dedup();
    Ok(Scan {
        found,
        unreadable,
        gone: Some(gone),
    })
}

/// What looking at some changed paths found.
#[derive(Default)]
struct Looked {
    found: Vec<Found>,
    unreadable: Vec<(String, String)>,
    gone: Vec<PathBuf>,
}

/// data_dir as an event run's scan looks into it: open, so each changed file is looked
/// up by its relative path (a storm's 10,000 lookups need not walk data_dir's own path
/// 10,000 times).
struct Base<'a> {
    data_dir: &'a Path,
    folder: Option<std::fs::File>,
}

impl<'a> Base<'a> {
    fn new(data_dir: &'a Path) -> Base<'a> {
        Base {
            data_dir,
            folder: std::fs::File::open(data_dir).ok(),
        }
    }

    /// The `lstat` of `rel` (not empty), looked up from the open folder.
    fn lstat(&self, rel: &Path) -> std::io::Result<Looks> {
        let Some(folder) = &self.folder else {
            return std::fs::symlink_metadata(self.data_dir.join(rel)).map(|m| Looks::of(&m));
        };
        let st = nix::sys::stat::fstatat(
            Some(folder.as_raw_fd()),
            rel,
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(std::io::Error::from)?;
        let kind =
            nix::sys::stat::SFlag::from_bits_truncate(st.st_mode) & nix::sys::stat::SFlag::S_IFMT;
        Ok(match kind {
            nix::sys::stat::SFlag::S_IFDIR => Looks::Folder,
            nix::sys::stat::SFlag::S_IFREG => Looks::File(Stat::of_raw(&st)),
            _ => Looks::Other,
        })
    }
}

/// What a changed path is now.
enum Looks {
    Folder,
    File(Stat),
    Other,
}

impl Looks {
    fn of(meta: &std::fs::Metadata) -> Looks {
        if meta.is_dir() {
            Looks::Folder
        } else if meta.is_file() {
            Looks::File(Stat::of(meta))
        } else {
            Looks::Other
        }
    }
}

/// Whether `rel` names a path under data_dir: relative, with no `..` (the watcher makes
/// none other; the check costs a scan of its bytes, components only when they hold "..").
pub(super) fn stays_inside(rel: &Path) -> bool {
    let bytes = rel.as_os_str().as_bytes();
    if bytes.first() == Some(&b'/') {
        return false;
    }
    !bytes.windows(2).any(|w| w == b"..")
        || rel.components().all(|c| {
            matches!(
                c,
                std::path::Component::Normal(_) | std::path::Component::CurDir
            )
        })
}

/// Looks at each of `changed` (relative to data_dir): a memory file is found, a folder
/// walked, a missing path gone.
fn look_at(
    base: &Base<'_>,
    config: &IngestConfig,
    changed: &[PathBuf],
    hints: &WatcherHints,
) -> Looked {
    let mut looked = Looked::default();
    let mut in_folders = Vec::new();
    let mut visit = |rel: PathBuf, meta: &std::fs::Metadata| {
        in_folders.push(Found {
            rel,
            stat: Stat::of(meta),
            heard: false,
        });
    };
    // A storm's paths share a few folders: each folder's globs are matched once, not once
    // per file in it.
    let mut last_folder: Option<(&Path, bool)> = None;
    for rel in changed {
        let rel = rel.as_path();
        if !stays_inside(rel) {
            continue;
        }
        let folder = rel.parent().unwrap_or(Path::new(""));
        let entered = match last_folder {
            Some((seen, entered)) if seen.as_os_str() == folder.as_os_str() => entered,
            _ => {
                let entered = folder
                    .ancestors()
                    .all(|a| a.as_os_str().is_empty() || walk::enters(config, a));
                last_folder = Some((folder, entered));
                entered
            }
        };
        if !entered {
            continue;
        }
        // A storm's files were read as their writers closed them: no second lookup.
        let looks = if rel.as_os_str().is_empty() {
            Ok(Looks::Folder)
        } else if let Some(stat) = hints.stat_read_early(rel) {
            Ok(Looks::File(stat))
        } else {
            base.lstat(rel)
        };
        match looks {
            Ok(Looks::Folder) => {
                if rel.as_os_str().is_empty() || walk::enters(config, rel) {
                    looked.unreadable.extend(walk::memory_files(
                        base.data_dir,
                        rel,
                        config,
                        &mut visit,
                    ));
                }
            }
            Ok(Looks::File(stat)) => {
                if walk::is_memory(config, rel) {
                    looked.found.push(Found {
                        rel: rel.to_path_buf(),
                        stat,
                        heard: false,
                    });
                }
            }
            // A link, FIFO or socket is no memory: a recorded one there is gone.
            Ok(Looks::Other) => looked.gone.push(rel.to_path_buf()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                looked.gone.push(rel.to_path_buf());
            }
            Err(e) => looked
                .unreadable
                .push((file_key::display(rel), e.to_string())),
        }
    }
    looked.found.extend(in_folders);
    looked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_under_data_dir_are_looked_at() {
        for inside in ["a.txt", "d/b.txt", "a..b.txt", "..hidden/c.txt", ""] {
            assert!(stays_inside(Path::new(inside)), "{inside}");
        }
        for outside in ["/etc/passwd", "../x.txt", "d/../../x.txt", "d/.."] {
            assert!(!stays_inside(Path::new(outside)), "{outside}");
        }
    }

    #[test]
    fn a_lookup_from_the_open_folder_sees_what_lstat_sees() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/m.txt"), "memory").unwrap();
        std::os::unix::fs::symlink("sub/m.txt", dir.path().join("link.txt")).unwrap();
        let base = Base::new(dir.path());
        let meta = std::fs::symlink_metadata(dir.path().join("sub/m.txt")).unwrap();
        assert!(
            matches!(base.lstat(Path::new("sub/m.txt")), Ok(Looks::File(s)) if s == Stat::of(&meta))
        );
        assert!(matches!(base.lstat(Path::new("sub")), Ok(Looks::Folder)));
        assert!(matches!(
            base.lstat(Path::new("link.txt")),
            Ok(Looks::Other)
        ));
        let gone = base.lstat(Path::new("sub/gone.txt")).err().unwrap();
        assert_eq!(gone.kind(), std::io::ErrorKind::NotFound);
    }
}
