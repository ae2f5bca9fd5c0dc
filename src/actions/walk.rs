//! Walking a folder tree for the regular files a caller wants.
//!
//! Written on `std::fs::read_dir` rather than a walker crate because std stats each entry
//! relative to its open folder (`statx(dirfd, name)`), where walkers stat the full path: on
//! 10,000 files those path lookups were a third of a no-op ingest run. Symbolic links are
//! not followed. A walk hands each file to a visitor rather than collecting them, so a walk
//! of 100,000 files holds no list of 100,000 paths and metadata (issue 8).

use std::fs::{DirEntry, Metadata};
use std::path::{Path, PathBuf};

use crate::config::rules::IngestConfig;
use crate::model::file_key;

/// A regular file found by the walk.
#[derive(Debug)]
pub(crate) struct Found {
    /// Relative to the walk's root.
    pub rel: PathBuf,
    pub meta: Metadata,
}

/// What a walk found: files in byte order of their relative paths, and what it could not
/// read, as (path, error).
#[derive(Debug, Default)]
pub(crate) struct Walk {
    pub files: Vec<Found>,
    pub unreadable: Vec<(String, String)>,
}

/// Whether the walk of data_dir enters the folder `rel` (relative to data_dir): the one
/// place the ingest globs prune folders, shared by full walks and event runs.
#[must_use]
pub(crate) fn enters(config: &IngestConfig, rel: &Path) -> bool {
    !config.exclude_set.is_match(rel)
}

/// Whether `rel` (relative to data_dir) is a memory file by the ingest globs.
#[must_use]
pub(crate) fn is_memory(config: &IngestConfig, rel: &Path) -> bool {
    config.include_set.is_match(rel) && !config.exclude_set.is_match(rel)
}

/// Visits the memory files under `data_dir/start` (`start` relative to data_dir, empty for
/// all of it): regular files matching the ingest globs, with excluded folders pruned. The
/// one walk the ingest plan and health share, so both count the same files. `start`'s own
/// folders are not checked here (see [`enters`]). Returns what could not be read.
pub(crate) fn memory_files(
    data_dir: &Path,
    start: &Path,
    config: &IngestConfig,
    visit: &mut dyn FnMut(PathBuf, &Metadata),
) -> Vec<(String, String)> {
    let mut unreadable = Vec::new();
    folder(
        &data_dir.join(start),
        start,
        &|rel| enters(config, rel),
        &|rel| is_memory(config, rel),
        &mut |rel, entry: &DirEntry| match entry.metadata() {
            Ok(meta) => {
                visit(rel, &meta);
                Ok(())
            }
            Err(e) => Err((file_key::display(&rel), e.to_string())),
        },
        &mut unreadable,
    );
    unreadable
}

/// Walks `root`, entering the folders `enter` accepts and keeping the files `keep`
/// accepts; both get paths relative to `root`.
pub(crate) fn files(
    root: &Path,
    enter: &dyn Fn(&Path) -> bool,
    keep: &dyn Fn(&Path) -> bool,
) -> Walk {
    let mut walk = Walk::default();
    let mut found = Vec::new();
    folder(
        root,
        Path::new(""),
        enter,
        keep,
        &mut |rel, entry: &DirEntry| match entry.metadata() {
            Ok(meta) => {
                found.push(Found { rel, meta });
                Ok(())
            }
            Err(e) => Err((file_key::display(&rel), e.to_string())),
        },
        &mut walk.unreadable,
    );
    found.sort_unstable_by(|a, b| a.rel.as_os_str().cmp(b.rel.as_os_str()));
    walk.files = found;
    walk
}

type Visit<'a> = dyn FnMut(PathBuf, &DirEntry) -> Result<(), (String, String)> + 'a;

fn folder(
    dir: &Path,
    rel_dir: &Path,
    enter: &dyn Fn(&Path) -> bool,
    keep: &dyn Fn(&Path) -> bool,
    visit: &mut Visit<'_>,
    unreadable: &mut Vec<(String, String)>,
) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            unreadable.push((dir.display().to_string(), e.to_string()));
            return;
        }
    };
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                unreadable.push((dir.display().to_string(), e.to_string()));
                continue;
            }
        };
        let rel = rel_dir.join(entry.file_name());
        let file_type = match entry.file_type() {
            Ok(t) => t,
            Err(e) => {
                unreadable.push((file_key::display(&rel), e.to_string()));
                continue;
            }
        };
        if file_type.is_dir() {
            if enter(&rel) {
                folder(&entry.path(), &rel, enter, keep, visit, unreadable);
            }
        } else if file_type.is_file()
            && keep(&rel)
            && let Err(e) = visit(rel, &entry)
        {
            unreadable.push(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_wanted_files_in_order_and_skips_unentered_folders() {
        let dir = tempfile::tempdir().unwrap();
        for rel in ["b.txt", "a/z.txt", "a/y.md", ".git/x.txt"] {
            let p = dir.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "x").unwrap();
        }
        let walk = files(dir.path(), &|rel| !rel.starts_with(".git"), &|rel| {
            rel.extension().is_some_and(|e| e == "txt")
        });
        let rels: Vec<_> = walk.files.iter().map(|f| f.rel.clone()).collect();
        assert_eq!(rels, [PathBuf::from("a/z.txt"), PathBuf::from("b.txt")]);
        assert!(walk.unreadable.is_empty());
    }
}
