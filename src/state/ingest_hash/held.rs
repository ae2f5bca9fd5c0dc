//! [`Held`]: the manifest a watcher keeps loaded across its runs, so a run that records
//! one file reads nothing but that file (issue 8). One handle, made once by the watcher
//! and cloned into every run; `--once` gets a fresh one and loads per run.

use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use super::manifest::IngestHash;
use crate::error::Result;

#[derive(Clone, Default)]
pub struct Held(Arc<Mutex<Option<IngestHash>>>);

/// A request is logged with `{:?}`: say what is held, not 100,000 records.
impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.try_lock().as_deref() {
            Ok(Some(h)) => write!(f, "Held({} records)", h.len()),
            Ok(None) => f.write_str("Held(not loaded)"),
            Err(_) => f.write_str("Held(in use)"),
        }
    }
}

/// The held manifest, loaded and up to date with disk, for the length of one run.
#[derive(Debug)]
pub struct HeldGuard<'a>(MutexGuard<'a, Option<IngestHash>>);

impl Held {
    /// Locks the manifest of `path`: loaded on first use, read again when another process
    /// replaced it, and the lines others appended to its journal replayed. Runs take it
    /// under `ingest.lock`, so waiting here is never for long.
    pub fn lock(&self, path: &Path) -> Result<HeldGuard<'_>> {
        // A run that panicked while holding it left it in an unknown state: read it again.
        let mut guard = self.0.lock().unwrap_or_else(|poisoned| {
            let mut g = poisoned.into_inner();
            *g = None;
            g
        });
        match guard.as_mut() {
            Some(h) if h.path == path => {
                if let Err(e) = h.refresh() {
                    *guard = None;
                    return Err(e);
                }
            }
            _ => *guard = Some(IngestHash::load(path)?),
        }
        Ok(HeldGuard(guard))
    }

    /// Whether records wait in the journal (the watcher folds them in as it stops); false
    /// while a run holds the manifest, since that run folds or journals them itself.
    #[must_use]
    pub fn has_journal(&self) -> bool {
        self.0
            .try_lock()
            .ok()
            .is_some_and(|g| g.as_ref().is_some_and(IngestHash::has_journal))
    }
}

impl HeldGuard<'_> {
    /// Drops what is held: the next run reads it from disk again (after a failed write,
    /// memory and disk may differ).
    pub fn forget(mut self) {
        *self.0 = None;
    }
}

impl Deref for HeldGuard<'_> {
    type Target = IngestHash;

    fn deref(&self) -> &IngestHash {
        self.0.as_ref().expect("lock() leaves a manifest in place")
    }
}

impl DerefMut for HeldGuard<'_> {
    fn deref_mut(&mut self) -> &mut IngestHash {
        self.0.as_mut().expect("lock() leaves a manifest in place")
    }
}
