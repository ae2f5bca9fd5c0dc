//! [`ChangeSet`]: the data files the watcher heard change since the last ingest run, and
//! which of them are complete — their writer closed them after its last write, or they
//! were renamed into place. An event run plans from these paths alone (a saved file costs
//! the same in a home of 100,000 files as in one of ten); a complete file need not wait
//! out `settle`, which, judged by mtime, is for files still open and for `--once`.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::model::event_kind::EventKind;

/// Paths kept: past this, the next run walks all of data_dir instead.
const KEPT: usize = 200_000;

#[derive(Debug, Default)]
pub(super) struct ChangeSet {
    /// Relative to data_dir: whether the last thing heard of it says it is complete.
    /// Hashed, not ordered: a storm notes 30,000 events here while the writer still
    /// writes, and comparing paths component by component kept the loop behind it.
    paths: HashMap<PathBuf, bool>,
    /// Folders heard being made (or moved in): the run walks each whole, so the paths
    /// heard inside them need no look of their own (a storm into a new folder).
    new_folders: BTreeSet<PathBuf>,
    /// The set cannot name everything that changed (too many paths, or an ingest run
    /// that did not finish its plan): the next run walks all of data_dir.
    incomplete: bool,
}

/// What the ingest run about to start gets.
#[derive(Debug, Default)]
pub(super) struct Taken {
    /// Every path heard, relative to data_dir; `None` when only a full walk will do.
    pub(super) changed: Option<Vec<PathBuf>>,
    /// The complete ones.
    pub(super) settled: HashSet<PathBuf>,
}

impl ChangeSet {
    /// `rel`, a folder, was made or moved in.
    pub(super) fn note_new_folder(&mut self, rel: &Path) {
        self.new_folders.insert(rel.to_path_buf());
    }

    /// `rel` changed; `settled` when its writer is done with it.
    pub(super) fn note(&mut self, rel: &Path, kind: EventKind, settled: bool) {
        // A removal says nothing about completeness; anything else after a close reopens it.
        let complete = |was: bool| settled || (kind == EventKind::Remove && was);
        if let Some(was) = self.paths.get_mut(rel) {
            *was = complete(*was);
            return;
        }
        if self.paths.len() >= KEPT {
            self.incomplete = true;
            return;
        }
        self.paths.insert(rel.to_path_buf(), complete(false));
    }

    /// The last ingest run did not get through its plan (it failed, was skipped or
    /// interrupted): what it was given may still be unrecorded, so the next walks all.
    pub(super) fn walk_all_next(&mut self) {
        self.incomplete = true;
    }

    /// Hands the set to the ingest run about to start, and starts a new one.
    pub(super) fn take(&mut self) -> Taken {
        let paths = std::mem::take(&mut self.paths);
        let folders = std::mem::take(&mut self.new_folders);
        let incomplete = std::mem::take(&mut self.incomplete);
        let walked = |path: &Path| {
            !folders.is_empty() && path.ancestors().skip(1).any(|a| folders.contains(a))
        };
        Taken {
            settled: {
                let mut settled = HashSet::with_capacity(paths.len());
                settled.extend(
                    paths
                        .iter()
                        .filter(|(_, complete)| **complete)
                        .map(|(path, _)| path.clone()),
                );
                settled
            },
            // In no particular order: the scan sorts what it finds.
            changed: (!incomplete).then(|| {
                let folders_alone = folders
                    .iter()
                    .filter(|f| !walked(f) && !paths.contains_key(f.as_path()))
                    .cloned()
                    .collect::<Vec<_>>();
                paths
                    .into_keys()
                    .filter(|p| !walked(p))
                    .chain(folders_alone)
                    .collect()
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The changed paths come in no particular order.
    fn sorted(changed: Option<Vec<PathBuf>>) -> Option<Vec<PathBuf>> {
        changed.map(|mut c| {
            c.sort();
            c
        })
    }

    #[test]
    fn a_file_is_complete_only_if_nothing_reopened_it_after_its_close() {
        let mut set = ChangeSet::default();
        let (a, b, c) = (Path::new("a.txt"), Path::new("b.txt"), Path::new("c.txt"));
        set.note(a, EventKind::Create, false);
        set.note(a, EventKind::Modify, false);
        set.note(a, EventKind::Modify, true);
        set.note(b, EventKind::Modify, true);
        set.note(b, EventKind::Modify, false);
        set.note(c, EventKind::Rename, true);
        let taken = set.take();
        assert_eq!(
            taken.settled,
            HashSet::from([a.to_path_buf(), c.to_path_buf()]),
            "b was written again after its close"
        );
        assert_eq!(
            sorted(taken.changed),
            Some(vec![a.to_path_buf(), b.to_path_buf(), c.to_path_buf()])
        );
        let next = set.take();
        assert!(next.settled.is_empty(), "taking starts a new set");
        assert_eq!(next.changed, Some(Vec::new()));
    }

    #[test]
    fn paths_inside_a_new_folder_are_left_to_its_walk() {
        let mut set = ChangeSet::default();
        set.note(Path::new("storm"), EventKind::Create, false);
        set.note_new_folder(Path::new("storm"));
        set.note(Path::new("storm/a.txt"), EventKind::Create, true);
        set.note(Path::new("storm/deep/b.txt"), EventKind::Create, true);
        set.note(Path::new("other.txt"), EventKind::Modify, true);
        let taken = set.take();
        assert_eq!(
            sorted(taken.changed),
            Some(vec![PathBuf::from("other.txt"), PathBuf::from("storm")])
        );
        assert_eq!(
            taken.settled.len(),
            3,
            "settling is still known file by file"
        );
    }

    #[test]
    fn a_run_that_did_not_finish_makes_the_next_walk_everything() {
        let mut set = ChangeSet::default();
        set.note(Path::new("a.txt"), EventKind::Create, true);
        set.walk_all_next();
        assert_eq!(set.take().changed, None);
        assert_eq!(set.take().changed, Some(Vec::new()), "once");
    }
}
