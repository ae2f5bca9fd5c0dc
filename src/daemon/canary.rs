//! The liveness canary: each tick the watcher writes a file of its own into data_dir and
//! waits for its event. A watcher that stops hearing data_dir (a lost inotify watch, a
//! remounted folder) reports nothing wrong on its own; a canary that never comes back is
//! how the loop finds out. The [`Scheduler`] keeps the canary's timing; this file does its
//! I/O, counts the misses in a row and decides the remedy.

use std::path::PathBuf;
use std::time::Instant;

use super::scheduler::Scheduler;
use crate::model::watcher_kind::WatcherKind;

/// What a missed canary calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Remedy {
    /// A fresh inotify watcher: the usual cause is a watch the kernel dropped.
    Rebuild,
    /// Inotify missed twice in a row, or polling itself missed: poll from now on.
    Poll,
}

impl Remedy {
    /// The kind of watcher to start in place of the deaf one.
    #[must_use]
    pub(super) fn kind(self) -> WatcherKind {
        match self {
            Remedy::Rebuild => WatcherKind::Inotify,
            Remedy::Poll => WatcherKind::Poll,
        }
    }

    /// How the log line says it.
    #[must_use]
    pub(super) fn describe(self) -> &'static str {
        match self {
            Remedy::Rebuild => "rebuilding it",
            Remedy::Poll => "switching to polling",
        }
    }
}

/// Decides the remedy after `misses` misses in a row of a watcher of kind `current`. Pure.
#[must_use]
pub(super) fn remedy(misses: u32, current: WatcherKind) -> Remedy {
    match current {
        WatcherKind::Poll => Remedy::Poll,
        WatcherKind::Inotify if misses > 1 => Remedy::Poll,
        WatcherKind::Inotify => Remedy::Rebuild,
    }
}

/// The canary file and the misses in a row.
#[derive(Debug)]
pub(super) struct Canary {
    file: PathBuf,
    misses: u32,
}

impl Canary {
    #[must_use]
    pub(super) fn new(file: PathBuf) -> Canary {
        Canary { file, misses: 0 }
    }

    /// Writes the canary if a tick asked for one, and starts waiting for its event. A
    /// canary that cannot be written is not waited for.
    pub(super) fn write_if_asked(&self, sched: &mut Scheduler, now: Instant) {
        if !sched.take_canary_request() {
            return;
        }
        match std::fs::write(&self.file, std::process::id().to_string()) {
            Ok(()) => sched.canary_written(now),
            Err(e) => log::warn!("cannot write the canary {}: {e}", self.file.display()),
        }
    }

    /// The canary's event arrived. `true` when it was the one awaited: the watcher hears
    /// data_dir, the count of misses starts again and the file goes.
    pub(super) fn seen(&mut self, sched: &mut Scheduler) -> bool {
        if !sched.canary_seen() {
            return false;
        }
        self.misses = 0;
        self.remove();
        true
    }

    /// The remedy, when the awaited canary is overdue: the watcher of kind `current`
    /// is taken as deaf.
    pub(super) fn missed(
        &mut self,
        sched: &mut Scheduler,
        now: Instant,
        current: WatcherKind,
    ) -> Option<Remedy> {
        if !sched.canary_missed(now) {
            return None;
        }
        self.misses += 1;
        self.remove();
        Some(remedy(self.misses, current))
    }

    /// data_dir moved (its link re-pointed): the canary is written at `file` from now on.
    /// One awaited in the old folder is no longer awaited (the watcher that would hear it
    /// is being replaced, which proves nothing either way); the next tick sends another.
    pub(super) fn moved(&mut self, file: PathBuf, sched: &mut Scheduler) {
        self.remove();
        sched.canary_seen();
        self.file = file;
    }

    /// Removes the canary file; one that is already gone is fine.
    pub(super) fn remove(&self) {
        let _ = std::fs::remove_file(&self.file);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::scheduler::Settings;
    use crate::model::action::Action;
    use std::time::Duration;

    #[test]
    fn inotify_is_rebuilt_once_and_replaced_by_polling_after_a_second_miss() {
        use WatcherKind::{Inotify, Poll};
        let cases = [
            (1, Inotify, Remedy::Rebuild),
            (2, Inotify, Remedy::Poll),
            (3, Inotify, Remedy::Poll),
            (1, Poll, Remedy::Poll),
        ];
        for (misses, current, want) in cases {
            assert_eq!(
                remedy(misses, current),
                want,
                "{misses} misses of {current:?}"
            );
        }
        assert_eq!(Remedy::Rebuild.kind(), Inotify);
        assert_eq!(Remedy::Poll.kind(), Poll);
    }

    /// Runs the tick due at `at` and writes its canary; returns when that canary is overdue.
    fn tick(sched: &mut Scheduler, canary: &Canary, at: Instant) -> Instant {
        sched.poll(at);
        sched.run_finished();
        canary.write_if_asked(sched, at);
        assert!(canary.file.exists(), "a tick writes the canary");
        at + Settings::from_rules(DEBOUNCE, TICK, TICK).canary_timeout
    }

    const DEBOUNCE: Duration = Duration::from_millis(400);
    const TICK: Duration = Duration::from_secs(60);

    #[test]
    fn a_canary_that_comes_back_resets_the_misses_and_goes() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(".memsched-canary-1");
        let t0 = Instant::now();
        let settings = Settings::from_rules(DEBOUNCE, TICK, TICK);
        let mut sched = Scheduler::new(settings, vec![Action::Ingest], t0);
        let mut canary = Canary::new(file.clone());
        let overdue = tick(&mut sched, &canary, t0 + TICK);
        assert_eq!(
            canary.missed(&mut sched, overdue, WatcherKind::Inotify),
            Some(Remedy::Rebuild)
        );
        assert!(!file.exists(), "a missed canary is removed");
        let overdue = tick(&mut sched, &canary, t0 + TICK * 2);
        assert_eq!(
            canary.missed(&mut sched, overdue, WatcherKind::Inotify),
            Some(Remedy::Poll)
        );
        tick(&mut sched, &canary, t0 + TICK * 3);
        assert!(canary.seen(&mut sched));
        assert!(!file.exists());
        assert!(!canary.seen(&mut sched), "only the awaited canary counts");
        let overdue = tick(&mut sched, &canary, t0 + TICK * 4);
        assert_eq!(
            canary.missed(&mut sched, overdue, WatcherKind::Inotify),
            Some(Remedy::Rebuild),
            "a canary seen in between starts the count again"
        );
    }
}
