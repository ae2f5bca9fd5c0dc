//! [`WatcherHints`]: what the watcher hands the ingest action, and it alone: the paths it
//! heard change, the files whose writers it heard finish, the hashes it took as they did,
//! the manifest it holds across runs, and the saves it hears while the run is under way.
//! Built once per run by the daemon; `--once` and the tests take
//! [`WatcherHints::default`], which plans from a walk of all of data_dir.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use crate::state::ingest_hash::{Digest, Held};
use crate::state::stat::Stat;

/// Content hashes the watcher took as each writer closed its file, by path relative to
/// data_dir, with the file's stat when it was read, each read after the last change the
/// watcher heard of its file. A plan trusts one while the file's stat is still that one,
/// as it trusts ingest_hash.json's stat cache, and an event run's scan takes a complete
/// file's stat from it without looking the file up: a storm of 10,000 new files is read
/// during its own quiet window (issue 8).
pub type Prehashed = HashMap<PathBuf, (Stat, Digest)>;

/// What the watcher knows that spares ingest work, handed to ingest alone.
#[derive(Debug, Clone, Default)]
pub struct WatcherHints {
    /// The paths the watcher heard change since the last run (relative to data_dir:
    /// files, removed files, new folders): ingest plans from these alone. `None` plans
    /// from a walk of all of data_dir (startup, tick, rescan, timer, manual, `--once`).
    pub changed: Option<Vec<PathBuf>>,
    /// Data files (relative to data_dir) whose writers the watcher heard finish: closed
    /// after their last write, or renamed into place. They need not wait out `settle`.
    pub closed: HashSet<PathBuf>,
    /// Data files the watcher hashed as their writers closed them (see [`Prehashed`]).
    pub prehashed: Prehashed,
    /// The ingest manifest: one handle held across a watcher's runs, a fresh one per
    /// `--once`.
    pub manifest: Held,
    /// Memories the watcher hears saved while this run is under way: sent in its next
    /// batch (`None` in `--once`, which hears nothing).
    pub fresh: Option<FreshSaves>,
}

impl WatcherHints {
    /// Whether the writer of `rel` was heard to finish: it is complete whatever its mtime
    /// says.
    #[must_use]
    pub fn was_closed(&self, rel: &Path) -> bool {
        self.closed.contains(rel)
    }

    /// The stat of `rel` as the watcher read it, when that is still all it has heard:
    /// complete, and nothing written, moved or removed since (the prehasher drops what a
    /// later change makes stale). A change still on its way to the loop may be missed,
    /// as a change just after a lookup would be; its event brings the next run.
    #[must_use]
    pub fn stat_read_early(&self, rel: &Path) -> Option<Stat> {
        let (stat, _) = self.prehashed.get(rel)?;
        self.was_closed(rel).then_some(*stat)
    }

    /// The hash the watcher took of `rel`, when the file's stat is still `stat`.
    #[must_use]
    pub fn hash_read_early(&self, rel: &Path, stat: Stat) -> Option<Digest> {
        self.prehashed
            .get(rel)
            .filter(|(early, _)| *early == stat)
            .map(|(_, hash)| *hash)
    }
}

/// Data files heard changing during one ingest run (relative to data_dir), each with
/// whether its writer has finished with it (closed it after its last write, or renamed it
/// into place). One handle is the watcher's, the other the run's.
#[derive(Debug, Clone, Default)]
pub struct FreshSaves(Arc<Mutex<HashMap<PathBuf, bool>>>);

impl FreshSaves {
    /// The watcher heard `rel` change; `complete` when its writer is done with it. A file
    /// reopened after its close waits for its next close.
    pub fn heard(&self, rel: &Path, complete: bool) {
        let mut heard = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        heard.insert(rel.to_path_buf(), complete);
    }

    /// Takes the complete files heard so far, leaving those still being written.
    pub(super) fn take_complete(&self) -> Vec<PathBuf> {
        let mut heard = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let mut complete: Vec<PathBuf> = heard
            .extract_if(|_, complete| *complete)
            .map(|(rel, _)| rel)
            .collect();
        complete.sort_unstable();
        complete
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_files_whose_writer_finished_are_taken_and_each_once() {
        let fresh = FreshSaves::default();
        let (a, b) = (Path::new("a.txt"), Path::new("b.txt"));
        fresh.heard(a, true);
        fresh.heard(b, true);
        fresh.heard(b, false);
        assert_eq!(fresh.take_complete(), [a.to_path_buf()]);
        assert!(fresh.take_complete().is_empty(), "taken once");
        fresh.heard(b, true);
        assert_eq!(
            fresh.take_complete(),
            [b.to_path_buf()],
            "b waited for its close"
        );
    }
}
