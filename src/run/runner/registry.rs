//! The commands running right now: what a first Ctrl-C says memsched waits for, and what a
//! second one ends ([`abort_all`]), whichever thread started them.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, bounded};

/// One running command, as people are told about it.
#[derive(Debug, Clone)]
pub(crate) struct Running {
    /// The action that runs it (`MEMSCHED_ACTION` of its environment).
    pub action: Option<String>,
    /// The task it retries (`MEMSCHED_TASK_ID`).
    pub task_id: Option<String>,
    pub program: String,
    /// Its pid, which is also its process group.
    pub pid: u32,
    pub started: Instant,
}

impl fmt::Display for Running {
    /// "the ingest step python3 (pid 1234, process group 1234, running for 3 s)".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let program = std::path::Path::new(&self.program).file_name().map_or_else(
            || self.program.clone(),
            |n| n.to_string_lossy().into_owned(),
        );
        match (&self.action, &self.task_id) {
            (Some(action), Some(task)) => write!(f, "the {action} step {program} for task {task}")?,
            (Some(action), None) => write!(f, "the {action} step {program}")?,
            (None, _) => write!(f, "{program}")?,
        }
        write!(
            f,
            " (pid {}, process group {}, running for {} s)",
            self.pid,
            self.pid,
            self.started.elapsed().as_secs()
        )
    }
}

struct Slot {
    id: u64,
    info: Running,
    abort: Sender<()>,
}

/// The registry: every running command, and whether an abort was asked (sticky, so a
/// command that starts while the abort goes round is ended too).
struct Registry {
    slots: Vec<Slot>,
    aborted: bool,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    slots: Vec::new(),
    aborted: false,
});
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    // A panic elsewhere while holding the lock leaves a list that is still valid.
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A command's place in the registry; dropping it removes the command.
pub(in crate::run) struct Entry {
    id: u64,
    abort: Receiver<()>,
}

impl Entry {
    /// Receives once when the command must be ended.
    pub(in crate::run) fn abort(&self) -> &Receiver<()> {
        &self.abort
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        registry().slots.retain(|s| s.id != self.id);
    }
}

/// Adds a command that has just started as `pid`; `action` and `task_id` say what it
/// does, for people.
pub(in crate::run) fn register(
    action: Option<String>,
    task_id: Option<String>,
    program: &str,
    pid: u32,
) -> Entry {
    let (tx, rx) = bounded(1);
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let mut registry = registry();
    if registry.aborted {
        let _ = tx.try_send(());
    }
    registry.slots.push(Slot {
        id,
        info: Running {
            action,
            task_id,
            program: program.to_owned(),
            pid,
            started: Instant::now(),
        },
        abort: tx,
    });
    Entry { id, abort: rx }
}

/// The commands running now, oldest first.
#[must_use]
pub(crate) fn running() -> Vec<Running> {
    registry().slots.iter().map(|s| s.info.clone()).collect()
}

/// Ends every running command's whole process group (SIGTERM, then SIGKILL after a
/// grace), and any command that starts from now on; each ended command's report says
/// `interrupted`. Returns what it ends. Safe from any thread; it does not wait.
pub(crate) fn abort_all() -> Vec<Running> {
    let mut registry = registry();
    registry.aborted = true;
    for slot in &registry.slots {
        let _ = slot.abort.try_send(());
    }
    registry.slots.iter().map(|s| s.info.clone()).collect()
}
