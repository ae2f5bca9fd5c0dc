//! The always-on watcher: takes the scheduler lock, resolves where to look, wires the
//! channels and the threads that feed them, and hands over to the loop until SIGINT or
//! SIGTERM. The rooms: `event_loop` (the loop and what it owns), `worker` (each run on a
//! thread of its own), `watcher_life` (the file-system watcher from start to rebuild),
//! and the pure decisions beside them: `routing` (a change into actions),
//! [`Scheduler`](scheduler::Scheduler) (when they run), `after_run` (what a finished run
//! leaves to do), `reload` (what new rules change), `canary` (when the watcher is deaf);
//! `self_report` is what the loop says about itself.

mod after_run;
mod baseline;
mod canary;
mod change_set;
mod event_loop;
mod input;
mod prehash;
mod reload;
mod routing;
pub(crate) mod scheduler;
mod self_report;
mod watcher_life;
mod worker;

use std::path::Path;
use std::time::Instant;

use crossbeam_channel::unbounded;

use crate::config::paths::Paths;
use crate::config::rules::Rules;
use crate::error::{Error, Exit, Result};
use crate::model::action::Action;
use crate::model::watcher_kind::WatcherKind;
use crate::os::lock;
use crate::watch::{self, Outlet};
use event_loop::{Channels, Config, Daemon};

/// Changes the loop may fall behind by before they are dropped for a rescan.
pub(crate) const DEFAULT_EVENT_QUEUE: usize = 65_536;

/// How the watcher was asked to run.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// The actions it may run (`--mode`).
    pub allowed: Vec<Action>,
    /// Changes the loop may fall behind by (`MEMSCHED_EVENT_QUEUE`, a diagnostic knob).
    pub event_queue: usize,
    /// Poll instead of inotify (`--poll`).
    pub poll: bool,
}

/// Runs the watcher until SIGINT or SIGTERM. Startup failures (lock, folders, watcher)
/// are errors; everything after is logged and the loop goes on.
pub(crate) fn run(
    paths: &Paths,
    rules_file: &Path,
    rules: Rules,
    options: &Options,
) -> Result<Exit> {
    crate::os::allocator::settle_for_long_life();
    std::fs::create_dir_all(&paths.state_dir).map_err(|source| Error::StateWrite {
        path: paths.state_dir.clone(),
        source,
    })?;
    let _scheduler_lock = lock::try_acquire(&paths.action_lock("scheduler"))?;
    let roots = watcher_life::roots(paths, rules_file, &rules)?;
    let (changes_tx, changes_rx) = unbounded();
    let (control_tx, control_rx) = unbounded();
    let (notices_tx, notices_rx) = unbounded();
    input::forward_signals(control_tx.clone())?;
    input::forward_notices(notices_rx, control_tx.clone());
    let now = Instant::now();
    let channels = Channels {
        outlet: Outlet {
            changes: changes_tx,
            notices: notices_tx,
            backlog: watch::Backlog::default(),
            capacity: options.event_queue.max(1),
        },
        control: control_tx,
    };
    let config = Config {
        file: rules_file.to_path_buf(),
        rules,
        modes: options.allowed.clone(),
    };
    // Bound here, so what it owns (the ingest journal to fold in) goes after "stopped"
    // and before the scheduler lock.
    let mut d = Daemon::new(paths, config, roots, channels, now);
    let kind = if options.poll {
        WatcherKind::Poll
    } else {
        WatcherKind::Inotify
    };
    d.run(kind, now, &changes_rx, &control_rx)?;
    log::info!("stopped");
    Ok(Exit::Ok)
}
