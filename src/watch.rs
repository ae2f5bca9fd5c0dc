//! The file-system side of the watcher: inotify watching data_dir (recursively), the
//! folders of the state files and the rules, and the folders upload `sources` name. Events
//! come straight from memsched's own inotify backend ([`InotifyWatcher`], which asks for
//! changes only, issue 8) as notify events, one at a time, with no debouncer in between:
//! the scheduler holds the one debounce, with its other timers, so nothing wakes while
//! nothing is pending.
//!
//! The watcher's thread translates each event ([`change::classify`]), drops what no rule wants
//! ([`Interest`]) and sends the rest. It never blocks: when the loop falls `capacity`
//! changes behind, further changes are dropped and one `Overflow` notice goes out instead,
//! exactly like an inotify queue overflow. The loop answers both with a full reconcile,
//! which plans from disk, so nothing is lost.

pub(crate) mod change;
pub(crate) mod inotify;
pub(crate) mod interest;
pub(crate) mod mounts;
pub(crate) mod poll;
pub(crate) mod sleep;

pub(crate) use change::{Change, Roots, classify, source_folders};
pub(crate) use inotify::InotifyWatcher;
pub(crate) use interest::Interest;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crossbeam_channel::Sender;
use notify::RecursiveMode;

use poll::Poller;

use crate::error::{Error, LIMIT_HINT, Result};
use crate::model::watcher_kind::WatcherKind;

/// Name prefix of the liveness canary the watcher writes into data_dir.
pub(crate) const CANARY_PREFIX: &str = ".memsched-canary-";
/// How often the polling fallback scans.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// What the watcher tells the event loop, besides changes.
#[derive(Debug)]
pub(crate) enum Notice {
    /// Changes were dropped because the loop fell behind: reconcile everything.
    Overflow,
    /// The watcher reported errors (a watch lost).
    Errors(Vec<String>),
    /// The OS watch limit stopped a watch: the folders past it are deaf until the loop
    /// polls instead. Why, said for health (see [`watch_limit_reason`]).
    WatchLimit(String),
    /// A file system was mounted or unmounted at, under or above data_dir (what changed):
    /// its folders are watched by no one yet, or its watches are gone (see [`mounts`]).
    Mounts(String),
}

/// Why the watcher polls once the inotify watch limit stopped a watch of `at`: names the
/// limit and how to raise it.
#[must_use]
pub(crate) fn watch_limit_reason(at: Option<&Path>) -> String {
    let at = at.map_or_else(String::new, |p| format!(" at {}", p.display()));
    format!(
        "the inotify watch limit (fs.inotify.max_user_watches) was reached{at}; {LIMIT_HINT}, then restart memsched"
    )
}

/// The loop's side of the change queue: how far behind it is.
#[derive(Debug, Clone, Default)]
pub(crate) struct Backlog {
    /// Changes sent and not yet taken.
    queued: Arc<AtomicUsize>,
    /// Set past the capacity; cleared by the loop once it has answered with a rescan.
    lost: Arc<std::sync::atomic::AtomicBool>,
}

impl Backlog {
    /// The loop took `n` changes off the queue.
    pub(crate) fn taken(&self, n: usize) {
        self.queued.fetch_sub(n, Ordering::SeqCst);
    }

    /// The loop answered the overflow with a rescan: drop no more.
    pub(crate) fn rescanned(&self) {
        self.lost.store(false, Ordering::SeqCst);
    }
}

/// Where the watcher's thread sends what it heard.
#[derive(Debug, Clone)]
pub(crate) struct Outlet {
    pub changes: Sender<Change>,
    pub notices: Sender<Notice>,
    pub backlog: Backlog,
    /// Changes the loop may fall behind by before they are dropped.
    pub capacity: usize,
}

/// Forwards the watcher's events (notify events) to the loop; never blocks, never panics.
struct Forward {
    roots: Roots,
    interest: Interest,
    outlet: Outlet,
    /// Test hook: changes still to drop as if the loop had fallen behind.
    drop: Arc<AtomicUsize>,
}

/// `MEMSCHED_TEST_DROP_EVENTS=N`: drop the first N changes as if the loop had fallen
/// behind, so tests can prove that a lost change loses no file.
fn changes_to_drop() -> usize {
    std::env::var("MEMSCHED_TEST_DROP_EVENTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

impl Forward {
    fn send(&self, change: Change) {
        let queued = &self.outlet.backlog.queued;
        let dropped_for_test = self
            .drop
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if dropped_for_test || queued.load(Ordering::SeqCst) >= self.outlet.capacity {
            // One notice per episode; the loop clears the flag when it reconciles.
            if !self.outlet.backlog.lost.swap(true, Ordering::SeqCst) {
                let _ = self.outlet.notices.send(Notice::Overflow);
            }
            return;
        }
        queued.fetch_add(1, Ordering::SeqCst);
        if self.outlet.changes.send(change).is_err() {
            queued.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl notify::EventHandler for Forward {
    fn handle_event(&mut self, event: notify::Result<notify::Event>) {
        match event {
            Ok(event) => {
                for change in classify(&event, &self.roots) {
                    if self.interest.wants(&change) {
                        self.send(change);
                    }
                }
            }
            Err(error) if matches!(error.kind, notify::ErrorKind::MaxFilesWatch) => {
                let reason = watch_limit_reason(error.paths.first().map(PathBuf::as_path));
                let _ = self.outlet.notices.send(Notice::WatchLimit(reason));
            }
            Err(error) => {
                let _ = self
                    .outlet
                    .notices
                    .send(Notice::Errors(vec![error.to_string()]));
            }
        }
    }
}

/// A running watcher; dropping it stops watching.
pub(crate) enum Watcher {
    Native(InotifyWatcher),
    Poll(Poller),
}

impl Watcher {
    #[must_use]
    pub(crate) fn kind(&self) -> WatcherKind {
        match self {
            Watcher::Native(_) => WatcherKind::Inotify,
            Watcher::Poll(_) => WatcherKind::Poll,
        }
    }

    /// Watches one more folder (a source folder that appeared, say).
    pub(crate) fn watch(&mut self, dir: &Path, mode: RecursiveMode) -> Result<()> {
        match self {
            Watcher::Native(w) => w.watch(dir, mode).map_err(|source| Error::Watch {
                path: dir.to_path_buf(),
                source,
            }),
            Watcher::Poll(p) => {
                p.watch(dir, mode);
                Ok(())
            }
        }
    }
}

/// A watcher just started, and why it polls when inotify was asked for.
pub(crate) struct Started {
    pub watcher: Watcher,
    /// Set when inotify could not be set up (the watch limit, say): health names it.
    pub fell_back: Option<String>,
}

/// Starts watching `roots` with a watcher of `kind`. Inotify falls back to polling (with a
/// warning that says how to raise the inotify limits) when it cannot be set up. Folders
/// that do not exist yet (a source folder the first ingest creates) are skipped: the
/// loop adds them when their creation is heard.
#[allow(clippy::unnecessary_wraps)] // starting a backend can fail; the watcher callers handle one shape
pub(crate) fn start(
    roots: &Roots,
    interest: &Interest,
    outlet: &Outlet,
    kind: WatcherKind,
) -> Result<Started> {
    let drop = Arc::new(AtomicUsize::new(changes_to_drop()));
    let forward = || Forward {
        roots: roots.clone(),
        interest: interest.clone(),
        outlet: outlet.clone(),
        drop: drop.clone(),
    };
    if kind == WatcherKind::Inotify {
        let native = InotifyWatcher::new(forward())
            .map(Watcher::Native)
            .map_err(|source| Error::Watch {
                path: roots.data_dir.clone(),
                source,
            })
            .and_then(|w| watch_all(w, roots));
        let why = match native {
            Ok(watcher) => {
                return Ok(Started {
                    watcher,
                    fell_back: None,
                });
            }
            Err(e) => format!("inotify could not be set up ({}); {LIMIT_HINT}", e.chain()),
        };
        log::warn!("cannot watch with inotify; polling every {POLL_INTERVAL:?} instead: {why}");
        return Ok(Started {
            watcher: poller(roots, forward()),
            fell_back: Some(why),
        });
    }
    Ok(Started {
        watcher: poller(roots, forward()),
        fell_back: None,
    })
}

/// Polls every folder of `roots`. Folders missing now are walked once they exist: a walk
/// of a missing folder finds nothing, and the next finds everything in it as new.
fn poller(roots: &Roots, forward: Forward) -> Watcher {
    Watcher::Poll(Poller::start(roots.folders(), POLL_INTERVAL, forward))
}

fn watch_all(mut watcher: Watcher, roots: &Roots) -> Result<Watcher> {
    // Parents first: a folder missing when its turn comes, but made a moment later, is
    // then heard being made (data_dir replaced while the watcher is rebuilt).
    let mut folders = roots.folders();
    folders.sort_by_key(|(_, mode)| *mode == RecursiveMode::Recursive);
    for (dir, mode) in folders {
        // A source folder the first ingest makes, or data_dir while it is being replaced
        // (it may go between a look and the watch): their parents are watched, and the
        // loop rebuilds the watcher when they appear. Only other failures (the inotify
        // limits) are the watcher's.
        match watcher.watch(&dir, mode) {
            Err(Error::Watch { source, .. })
                if matches!(source.kind, notify::ErrorKind::PathNotFound) || !dir.is_dir() =>
            {
                log::debug!(
                    "{} does not exist (yet): watched once it appears",
                    dir.display()
                );
            }
            other => other?,
        }
    }
    Ok(watcher)
}
