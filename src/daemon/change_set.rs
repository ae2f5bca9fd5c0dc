//! [`ChangeSet`]: the data files the watcher heard change since the last ingest run, and
//! which of them are complete — their writer closed them after its last write, or they
//! were renamed into place. A complete file need not wait out `settle`: that wait, judged
//! by mtime, is for files still open and for `--once`, which heard nothing.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use crate::event_kind::EventKind;

/// Paths kept: past this, further files simply wait out `settle` (the set stays small).
const KEPT: usize = 200_000;

#[derive(Debug, Default)]
pub(super) struct ChangeSet {
    /// Relative to data_dir: whether the last thing heard of it says it is complete.
    paths: BTreeMap<PathBuf, bool>,
}

impl ChangeSet {
    /// `rel` changed; `settled` when its writer is done with it.
    pub(super) fn note(&mut self, rel: &Path, kind: EventKind, settled: bool) {
        if self.paths.len() >= KEPT && !self.paths.contains_key(rel) {
            return;
        }
        // A removal says nothing about completeness; anything else after a close reopens it.
        let complete = settled || (kind == EventKind::Remove && self.paths.get(rel) == Some(&true));
        self.paths.insert(rel.to_path_buf(), complete);
    }

    /// Hands the set to the ingest run about to start, and starts a new one.
    pub(super) fn take(&mut self) -> HashSet<PathBuf> {
        std::mem::take(&mut self.paths)
            .into_iter()
            .filter_map(|(path, complete)| complete.then_some(path))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let complete = set.take();
        assert_eq!(
            complete,
            HashSet::from([a.to_path_buf(), c.to_path_buf()]),
            "b was written again after its close"
        );
        assert!(set.take().is_empty(), "taking starts a new set");
    }
}
