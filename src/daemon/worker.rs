//! The run worker: each reconcile runs on a thread of its own, so the loop keeps
//! listening, and comes back to the loop as an input with its record and what it carried.
//! It also keeps what outlives a run: the stop flag, the ingest manifest held for the
//! watcher's life (folded in as the watcher stops), the threads waiting for a lock
//! another process holds, and the end of the resident steps kept between runs.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crossbeam_channel::Sender;

use super::after_run::Carried;
use super::input::Input;
use crate::config::paths::Paths;
use crate::config::rules::Rules;
use crate::model::action::Action;
use crate::model::trigger::Trigger;
use crate::os::lock;
use crate::reconcile::{self, Request};
use crate::state::ingest_hash::Held;

/// What the run threads get from the loop.
pub(super) struct Worker {
    /// Where a finished run's record goes.
    pub(super) done: Sender<Input>,
    /// Set on SIGINT or SIGTERM: the running reconcile finishes its step and starts no other.
    pub(super) stop: Arc<AtomicBool>,
    /// The actions of the next run that a heard change asked for: [`Worker::spawn`] takes
    /// it along with the run, and it comes back with the record.
    pub(super) heard: Vec<Action>,
    /// The next run plans ingest from the changed paths alone (taken along like `heard`).
    pub(super) partial_ingest: bool,
    /// Actions skipped because another process held their lock, each with a thread
    /// waiting for that lock to be free.
    pub(super) awaiting_lock: HashSet<Action>,
    /// The ingest manifest, loaded by the first run and held for the watcher's life, so an
    /// event run reads only the files that changed (issue 8).
    pub(super) manifest: Held,
    /// ingest_hash.json and ingest.lock, to fold the journal in as the watcher stops.
    ingest_hash: PathBuf,
    ingest_lock: PathBuf,
}

impl Drop for Worker {
    /// Folds the journal of the last event runs into ingest_hash.json as the watcher
    /// stops, so the pipeline's scripts find every record there. Skipped when another
    /// process holds ingest.lock: its run compacts, and the journal is safe either way.
    fn drop(&mut self) {
        // Resident steps end with the watcher (EOF on their stdin, waited for), and with
        // them their hold on ingest.lock, which the fold below takes.
        crate::run::resident::stop_all();
        if !self.manifest.has_journal() {
            return;
        }
        let Ok(_guard) = lock::try_acquire(&self.ingest_lock) else {
            return;
        };
        let saved = self
            .manifest
            .lock(&self.ingest_hash)
            .and_then(|mut h| h.save());
        if let Err(e) = saved {
            log::warn!(
                "the ingest journal stays beside ingest_hash.json: {}",
                e.chain()
            );
        }
    }
}

impl Worker {
    /// A worker for `paths`' pipeline that sends what it has to say on `done`.
    pub(super) fn new(paths: &Paths, done: Sender<Input>) -> Worker {
        Worker {
            done,
            stop: Arc::new(AtomicBool::new(false)),
            awaiting_lock: HashSet::new(),
            heard: Vec::new(),
            partial_ingest: false,
            manifest: Held::default(),
            ingest_hash: paths.ingest_hash.clone(),
            ingest_lock: paths.action_lock(Action::Ingest.name()),
        }
    }

    /// `action` was skipped because another process (a `--once`) holds its lock, and
    /// that process planned before the changes that woke this run: wait for the lock on a
    /// thread, then run the action again.
    pub(super) fn await_lock(&mut self, paths: &Paths, action: Action) {
        if !self.awaiting_lock.insert(action) {
            return;
        }
        let (lock, tx) = (paths.action_lock(action.name()), self.done.clone());
        std::thread::spawn(move || {
            if let Err(e) = lock::wait_until_free(&lock) {
                log::warn!("cannot wait for {}: {}", lock.display(), e.chain());
            }
            let _ = tx.send(Input::LockFree(action));
        });
    }

    /// Runs `request` on a thread of its own, then records it and hands it back to the
    /// loop with what the run carries (`heard`, `partial_ingest`, taken here).
    pub(super) fn spawn(&mut self, paths: &Paths, rules: &Rules, request: Request) {
        let names: Vec<&str> = request.actions.iter().map(|a| a.name()).collect();
        // A tick runs every few minutes and mostly finds nothing: its actions' lines say
        // at info what it did, if it did anything.
        let level = if request.trigger == Trigger::Tick {
            log::Level::Debug
        } else {
            log::Level::Info
        };
        log::log!(
            level,
            "run ({}) of {}: woken by {}",
            request.trigger.name(),
            names.join(", "),
            request.woken_by.join("; ")
        );
        let mut carried = Carried {
            heard: std::mem::take(&mut self.heard),
            partial_ingest: std::mem::take(&mut self.partial_ingest),
            upload_started: None,
        };
        let (paths, rules, tx) = (paths.clone(), rules.clone(), self.done.clone());
        std::thread::spawn(move || {
            let (record, logged) = reconcile::run_and_record(&paths, &rules, &request);
            carried.upload_started = request.upload_started.get().copied();
            if let Err(e) = logged {
                log::error!("the run was not recorded: {}", e.chain());
            }
            let _ = tx.send(Input::Finished(Box::new(record), carried));
            // The run's plan, hashes and batches are freed by now; glibc would keep them.
            crate::os::allocator::give_back();
        });
    }
}
