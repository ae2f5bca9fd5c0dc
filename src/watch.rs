//! The file-system side of the watcher: notify plus notify-debouncer-full watching
//! data_dir (recursively) and the folders of the state files and the rules (folders, not
//! files: writers replace files by rename), and the pure translation of a debounced event
//! into [`Change`]s.
//!
//! Callbacks only send. Debounced batches go to a bounded channel with `try_send`: when the
//! loop falls behind, the batch is dropped and one `Overflow` notice goes to the control
//! channel instead, exactly like an inotify queue overflow. The loop answers both with a
//! full reconcile, which plans from disk, so nothing is lost.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crossbeam_channel::{Sender, TrySendError};
use notify_debouncer_full::notify::event::ModifyKind;
use notify_debouncer_full::notify::{
    self, EventKind as NotifyKind, PollWatcher, RecommendedWatcher, RecursiveMode,
};
use notify_debouncer_full::{
    DebounceEventHandler, DebounceEventResult, DebouncedEvent, Debouncer, NoCache,
    RecommendedCache, new_debouncer_opt,
};

use crate::error::{Error, LIMIT_HINT, Result};
use crate::event_kind::EventKind;
use crate::scope::Scope;
use crate::watcher_kind::WatcherKind;

/// Name prefix of the liveness canary the watcher writes into data_dir.
pub const CANARY_PREFIX: &str = ".memsched-canary-";
/// How often the polling fallback scans.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// What the watcher tells the event loop, besides debounced batches.
#[derive(Debug)]
pub enum Notice {
    /// A batch was dropped because the loop fell behind: reconcile everything.
    Overflow,
    /// notify reported errors (a watch lost, a queue overflow).
    Errors(Vec<String>),
}

/// One thing a debounced event means for the loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A file under data_dir (relative path) or directly in state_dir (file name).
    File {
        scope: Scope,
        rel: PathBuf,
        kind: EventKind,
        path: PathBuf,
    },
    /// The rules file was written, replaced or removed.
    Rules,
    /// The pause marker appeared or went.
    Pause,
    /// The watcher's own liveness canary came back.
    Canary,
    /// The watcher lost events (the kernel queue overflowed): reconcile everything.
    Rescan,
}

/// Where things are, as the watcher sees them (canonical paths).
#[derive(Debug, Clone)]
pub struct Roots {
    pub data_dir: PathBuf,
    pub state_dir: PathBuf,
    pub rules_file: PathBuf,
    pub pause_file: PathBuf,
    pub canary_file: PathBuf,
}

impl Roots {
    /// The folders to watch, each once: data_dir recursively, the others not.
    #[must_use]
    pub fn folders(&self) -> Vec<(PathBuf, RecursiveMode)> {
        let mut out = vec![(self.data_dir.clone(), RecursiveMode::Recursive)];
        for dir in [Some(self.state_dir.as_path()), self.rules_file.parent()]
            .into_iter()
            .flatten()
        {
            let covered = out.iter().any(|(d, mode)| {
                d == dir || (*mode == RecursiveMode::Recursive && dir.starts_with(d))
            });
            if !covered {
                out.push((dir.to_path_buf(), RecursiveMode::NonRecursive));
            }
        }
        out
    }
}

/// What a debounced event means: zero or more changes. Pure.
#[must_use]
pub fn classify(event: &DebouncedEvent, roots: &Roots) -> Vec<Change> {
    if event.need_rescan() {
        return vec![Change::Rescan];
    }
    let kind = match event.kind {
        NotifyKind::Create(_) => EventKind::Create,
        NotifyKind::Modify(ModifyKind::Name(_)) => EventKind::Rename,
        NotifyKind::Modify(_) | NotifyKind::Any | NotifyKind::Other => EventKind::Modify,
        NotifyKind::Remove(_) => EventKind::Remove,
        NotifyKind::Access(_) => return Vec::new(),
    };
    event
        .paths
        .iter()
        .filter_map(|path| classify_path(path, kind, roots))
        .collect()
}

fn classify_path(path: &Path, kind: EventKind, roots: &Roots) -> Option<Change> {
    if path == roots.rules_file {
        return Some(Change::Rules);
    }
    if path == roots.pause_file {
        return Some(Change::Pause);
    }
    if path == roots.canary_file {
        return Some(Change::Canary);
    }
    let name = path.file_name()?.to_string_lossy();
    // Temporary files of memsched's own atomic writes, and other watchers' canaries.
    if name.starts_with(".memsched-") {
        return None;
    }
    if let Ok(rel) = path.strip_prefix(&roots.data_dir) {
        if rel.as_os_str().is_empty() {
            return None;
        }
        return Some(Change::File {
            scope: Scope::Data,
            rel: rel.to_path_buf(),
            kind,
            path: path.to_path_buf(),
        });
    }
    if path.parent() == Some(roots.state_dir.as_path()) {
        return Some(Change::File {
            scope: Scope::State,
            rel: PathBuf::from(path.file_name()?),
            kind,
            path: path.to_path_buf(),
        });
    }
    None
}

/// Forwards debounced batches to the loop; never blocks, never panics.
struct Forward {
    batches: Sender<Vec<DebouncedEvent>>,
    notices: Sender<Notice>,
    lost: Arc<AtomicBool>,
    /// Test hook: batches still to drop as if the loop had fallen behind.
    drop: Arc<AtomicUsize>,
}

/// `MEMSCHED_TEST_DROP_BATCHES=N`: drop the first N debounced batches as if the loop had
/// fallen behind, so tests can prove that a lost batch loses no file.
fn batches_to_drop() -> usize {
    std::env::var("MEMSCHED_TEST_DROP_BATCHES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

impl Forward {
    fn try_send(
        &self,
        batch: Vec<DebouncedEvent>,
    ) -> std::result::Result<(), TrySendError<Vec<DebouncedEvent>>> {
        let dropped = self
            .drop
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        match dropped {
            Ok(_) => Err(TrySendError::Full(batch)),
            Err(_) => self.batches.try_send(batch),
        }
    }
}

impl DebounceEventHandler for Forward {
    fn handle_event(&mut self, event: DebounceEventResult) {
        match event {
            Ok(batch) => match self.try_send(batch) {
                Ok(()) | Err(TrySendError::Disconnected(_)) => {}
                Err(TrySendError::Full(_)) => {
                    // One notice per episode; the loop clears the flag when it reconciles.
                    if !self.lost.swap(true, Ordering::SeqCst) {
                        let _ = self.notices.send(Notice::Overflow);
                    }
                }
            },
            Err(errors) => {
                let _ = self.notices.send(Notice::Errors(
                    errors.iter().map(ToString::to_string).collect(),
                ));
            }
        }
    }
}

/// A running watcher; dropping it stops watching.
pub enum Watcher {
    Native(Debouncer<RecommendedWatcher, RecommendedCache>),
    Poll(Debouncer<PollWatcher, NoCache>),
}

impl Watcher {
    #[must_use]
    pub fn kind(&self) -> WatcherKind {
        match self {
            Watcher::Native(_) => WatcherKind::Inotify,
            Watcher::Poll(_) => WatcherKind::Poll,
        }
    }
}

/// Starts watching `roots` with a watcher of `kind`. Inotify falls back to polling (with a
/// warning that says how to raise the inotify limits) when it cannot be set up.
pub fn start(
    roots: &Roots,
    debounce: Duration,
    batches: &Sender<Vec<DebouncedEvent>>,
    notices: &Sender<Notice>,
    lost: &Arc<AtomicBool>,
    kind: WatcherKind,
) -> Result<Watcher> {
    let drop = Arc::new(AtomicUsize::new(batches_to_drop()));
    let forward = || Forward {
        batches: batches.clone(),
        notices: notices.clone(),
        lost: lost.clone(),
        drop: drop.clone(),
    };
    if kind == WatcherKind::Inotify {
        let native = new_debouncer_opt::<_, RecommendedWatcher, RecommendedCache>(
            debounce,
            None,
            forward(),
            RecommendedCache::new(),
            notify::Config::default(),
        )
        .and_then(|mut d| {
            for (dir, mode) in roots.folders() {
                d.watch(&dir, mode)?;
            }
            Ok(d)
        });
        match native {
            Ok(d) => return Ok(Watcher::Native(d)),
            Err(e) => log::warn!(
                "cannot watch with inotify ({e}); polling every {POLL_INTERVAL:?} instead; {LIMIT_HINT}"
            ),
        }
    }
    let config = notify::Config::default().with_poll_interval(POLL_INTERVAL);
    let mut d =
        new_debouncer_opt::<_, PollWatcher, NoCache>(debounce, None, forward(), NoCache, config)
            .map_err(|source| Error::Watch {
                path: roots.data_dir.clone(),
                source,
            })?;
    for (dir, mode) in roots.folders() {
        d.watch(&dir, mode).map_err(|source| Error::Watch {
            path: dir.clone(),
            source,
        })?;
    }
    Ok(Watcher::Poll(d))
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, Flag, RemoveKind, RenameMode};
    use notify::{Event, EventKind as K};
    use std::time::Instant;

    fn roots() -> Roots {
        Roots {
            data_dir: PathBuf::from("/p/Data"),
            state_dir: PathBuf::from("/p"),
            rules_file: PathBuf::from("/p/watch-rules.toml"),
            pause_file: PathBuf::from("/p/Data/.memsched-pause"),
            canary_file: PathBuf::from("/p/Data/.memsched-canary-1"),
        }
    }

    fn event(kind: K, paths: &[&str]) -> DebouncedEvent {
        let mut e = Event::new(kind);
        for p in paths {
            e = e.add_path(PathBuf::from(p));
        }
        DebouncedEvent::new(e, Instant::now())
    }

    fn file(scope: Scope, rel: &str, kind: EventKind, path: &str) -> Change {
        Change::File {
            scope,
            rel: PathBuf::from(rel),
            kind,
            path: PathBuf::from(path),
        }
    }

    #[test]
    fn events_map_to_scoped_changes() {
        let r = roots();
        assert_eq!(
            classify(
                &event(K::Create(CreateKind::File), &["/p/Data/a/b.txt"]),
                &r
            ),
            [file(
                Scope::Data,
                "a/b.txt",
                EventKind::Create,
                "/p/Data/a/b.txt"
            )]
        );
        assert_eq!(
            classify(
                &event(
                    K::Modify(ModifyKind::Name(RenameMode::Both)),
                    &["/p/Data/.b.swp", "/p/Data/b.txt"]
                ),
                &r
            ),
            [
                file(Scope::Data, ".b.swp", EventKind::Rename, "/p/Data/.b.swp"),
                file(Scope::Data, "b.txt", EventKind::Rename, "/p/Data/b.txt")
            ]
        );
        assert_eq!(
            classify(
                &event(K::Remove(RemoveKind::File), &["/p/task_queue.json"]),
                &r
            ),
            [file(
                Scope::State,
                "task_queue.json",
                EventKind::Remove,
                "/p/task_queue.json"
            )]
        );
    }

    #[test]
    fn special_files_and_noise_are_recognised() {
        let r = roots();
        let modify = K::Modify(ModifyKind::Any);
        assert_eq!(
            classify(&event(modify, &["/p/watch-rules.toml"]), &r),
            [Change::Rules]
        );
        assert_eq!(
            classify(&event(modify, &["/p/Data/.memsched-pause"]), &r),
            [Change::Pause]
        );
        assert_eq!(
            classify(&event(modify, &["/p/Data/.memsched-canary-1"]), &r),
            [Change::Canary]
        );
        assert!(classify(&event(modify, &["/p/.memsched-x1.tmp"]), &r).is_empty());
        assert!(
            classify(&event(modify, &["/p/sub/deeper.json"]), &r).is_empty(),
            "state_dir is not recursive"
        );
        assert!(
            classify(
                &event(
                    K::Access(notify::event::AccessKind::Any),
                    &["/p/Data/a.txt"]
                ),
                &r
            )
            .is_empty()
        );
        let mut rescan = Event::new(K::Other);
        rescan = rescan.set_flag(Flag::Rescan);
        assert_eq!(
            classify(&DebouncedEvent::new(rescan, Instant::now()), &r),
            [Change::Rescan]
        );
    }

    #[test]
    fn folders_are_watched_once() {
        let r = roots();
        assert_eq!(
            r.folders(),
            [
                (PathBuf::from("/p/Data"), RecursiveMode::Recursive),
                (PathBuf::from("/p"), RecursiveMode::NonRecursive)
            ]
        );
    }
}
