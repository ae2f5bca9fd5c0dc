//! [`Prehasher`]: reads each memory file as its writer closes it, on a thread of its own,
//! so that the run after a storm finds most of its files already hashed (issue 8: hashing
//! 10,000 small files took about as long as the debounce itself, after it). The thread
//! blocks on its queue: nothing wakes while nothing is written.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use crossbeam_channel::{Sender, unbounded};

use crate::actions::Prehashed;
use crate::actions::ingest::hash_one;

/// Hashes kept at most between two ingest runs (the rest are hashed by the run).
const KEPT: usize = 200_000;

#[derive(Debug)]
pub(super) struct Prehasher {
    queue: Sender<(PathBuf, PathBuf)>,
    done: Arc<Mutex<Prehashed>>,
}

impl Prehasher {
    pub(super) fn start() -> Prehasher {
        let (queue, files) = unbounded::<(PathBuf, PathBuf)>();
        let done = Arc::new(Mutex::new(HashMap::new()));
        let into = Arc::clone(&done);
        std::thread::spawn(move || {
            let mut buf = vec![0; 64 * 1024];
            for (rel, abs) in files {
                let Ok(before) = std::fs::symlink_metadata(&abs) else {
                    continue;
                };
                if !before.is_file() {
                    continue;
                }
                // Read only what did not change while it was read, as a plan would.
                if let Ok((hash, Some(after))) = hash_one(&abs, &mut buf)
                    && after == crate::state::stat::Stat::of(&before)
                {
                    let mut done = into.lock().unwrap_or_else(PoisonError::into_inner);
                    if done.len() < KEPT || done.contains_key(&rel) {
                        done.insert(rel, (after, hash));
                    }
                }
            }
        });
        Prehasher { queue, done }
    }

    /// `rel` (under data_dir, at `abs`) was closed by its writer or renamed into place.
    pub(super) fn closed(&self, rel: PathBuf, abs: PathBuf) {
        let _ = self.queue.send((rel, abs));
    }

    /// What has been hashed so far, for the ingest run about to start.
    pub(super) fn take(&self) -> Prehashed {
        std::mem::take(&mut *self.done.lock().unwrap_or_else(PoisonError::into_inner))
    }
}
