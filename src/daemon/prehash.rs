//! [`Prehasher`]: reads each memory file as its writer closes it, on a thread of its own,
//! so that the run after a storm finds most of its files already hashed (issue 8: hashing
//! 10,000 small files took about as long as the debounce itself, after it). The thread
//! blocks on its queue: nothing wakes while nothing is written.
//!
//! What it hands a run is current as far as the loop has heard: a hash is kept only if
//! it was read after the last change the loop noted for its path, so an event run may
//! take a complete file's stat from here instead of looking the file up again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use crossbeam_channel::{Sender, unbounded};

use crate::actions::Prehashed;
use crate::actions::ingest::hash_one;

/// Hashes kept at most between two ingest runs (the rest are hashed by the run).
const KEPT: usize = 200_000;

#[derive(Debug, Default)]
struct Shared {
    done: Prehashed,
    /// The newest request per path still waiting for its hash: a result from an older
    /// one (read before a change the loop has since noted) is dropped.
    wanted: HashMap<PathBuf, u64>,
    next: u64,
}

#[derive(Debug)]
pub(super) struct Prehasher {
    queue: Sender<(PathBuf, PathBuf, u64)>,
    shared: Arc<Mutex<Shared>>,
}

impl Prehasher {
    pub(super) fn start() -> Prehasher {
        let (queue, files) = unbounded::<(PathBuf, PathBuf, u64)>();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let into = Arc::clone(&shared);
        std::thread::spawn(move || {
            let mut buf = vec![0; 64 * 1024];
            for (rel, abs, asked) in files {
                let Ok(before) = std::fs::symlink_metadata(&abs) else {
                    continue;
                };
                if !before.is_file() {
                    continue;
                }
                // Read only what did not change while it was read, as a plan would.
                let Ok((hash, Some(after))) = hash_one(&abs, &mut buf) else {
                    continue;
                };
                if after != crate::state::stat::Stat::of(&before) {
                    continue;
                }
                let mut shared = into.lock().unwrap_or_else(PoisonError::into_inner);
                if shared.wanted.get(&rel) != Some(&asked) {
                    continue;
                }
                shared.wanted.remove(&rel);
                if shared.done.len() < KEPT {
                    log::trace!("read {} as its writer closed it", rel.display());
                    shared.done.insert(rel, (after, hash));
                }
            }
        });
        Prehasher { queue, shared }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `rel` (under data_dir, at `abs`) was closed by its writer or renamed into place.
    pub(super) fn closed(&self, rel: PathBuf, abs: PathBuf) {
        let asked = {
            let mut shared = self.lock();
            shared.done.remove(&rel);
            shared.next += 1;
            let asked = shared.next;
            shared.wanted.insert(rel.clone(), asked);
            asked
        };
        let _ = self.queue.send((rel, abs, asked));
    }

    /// Something else happened to `rel` (written to, removed, renamed away): what was
    /// read of it before is no longer known to be current. With `inside`, `rel` may be a
    /// folder that moved or went: the same holds for everything under it.
    pub(super) fn forget(&self, rel: &Path, inside: bool) {
        let mut shared = self.lock();
        shared.done.remove(rel);
        shared.wanted.remove(rel);
        if inside {
            shared.done.retain(|path, _| !path.starts_with(rel));
            shared.wanted.retain(|path, _| !path.starts_with(rel));
        }
    }

    /// What has been hashed so far, for the ingest run about to start.
    pub(super) fn take(&self) -> Prehashed {
        std::mem::take(&mut self.lock().done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn wait_until_hashed(prehasher: &Prehasher, rel: &Path) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !prehasher.lock().done.contains_key(rel) {
            assert!(Instant::now() < deadline, "no hash of {}", rel.display());
            std::thread::yield_now();
        }
    }

    fn wait_for(prehasher: &Prehasher, rel: &Path) -> Prehashed {
        wait_until_hashed(prehasher, rel);
        prehasher.take()
    }

    #[test]
    fn a_hash_is_handed_over_once_and_a_later_change_drops_it() {
        let dir = tempfile::tempdir().unwrap();
        let abs = dir.path().join("a.txt");
        std::fs::write(&abs, "one").unwrap();
        let prehasher = Prehasher::start();
        let rel = PathBuf::from("a.txt");
        prehasher.closed(rel.clone(), abs.clone());
        let taken = wait_for(&prehasher, &rel);
        let meta = std::fs::symlink_metadata(&abs).unwrap();
        assert_eq!(taken[&rel].0, crate::state::stat::Stat::of(&meta));
        assert!(prehasher.take().is_empty(), "taken once");

        prehasher.closed(rel.clone(), abs.clone());
        let _ = wait_for(&prehasher, &rel);
        prehasher.closed(rel.clone(), abs.clone());
        prehasher.forget(&rel, false);
        // The forgotten request's result, whenever it comes, is not kept: a later one is.
        let other = PathBuf::from("b.txt");
        std::fs::write(dir.path().join("b.txt"), "two").unwrap();
        prehasher.closed(other.clone(), dir.path().join("b.txt"));
        let taken = wait_for(&prehasher, &other);
        assert!(!taken.contains_key(&rel), "{taken:?}");

        // A folder that moved away takes what was read inside it along.
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("d/c.txt"), "three").unwrap();
        let inner = PathBuf::from("d/c.txt");
        prehasher.closed(inner.clone(), dir.path().join("d/c.txt"));
        wait_until_hashed(&prehasher, &inner);
        prehasher.forget(Path::new("d"), true);
        assert!(prehasher.take().is_empty());
    }
}
