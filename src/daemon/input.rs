//! What reaches the loop besides file changes: the watcher's notices, signals, and what
//! the run threads send back. Each sender is a thread that only sends.

use std::thread;

use crossbeam_channel::{Receiver, Sender};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use super::after_run::Carried;
use crate::error::{Error, Result};
use crate::model::action::Action;
use crate::run::report::RunRecord;
use crate::watch::Notice;

pub(super) enum Input {
    Notice(Notice),
    Signal(i32),
    /// A run is back: its record, and what it carried from the order that started it.
    Finished(Box<RunRecord>, Carried),
    /// The lock of an action the watcher had to skip is free again.
    LockFree(Action),
}

/// SIGINT, SIGTERM and SIGHUP become inputs; the signal thread only sends.
pub(super) fn forward_signals(tx: Sender<Input>) -> Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .map_err(|source| Error::Signals { source })?;
    thread::spawn(move || {
        for signal in signals.forever() {
            if tx.send(Input::Signal(signal)).is_err() {
                break;
            }
        }
    });
    Ok(())
}

/// The watcher's notices (overflow, errors) become inputs.
pub(super) fn forward_notices(rx: Receiver<Notice>, tx: Sender<Input>) {
    thread::spawn(move || {
        for notice in rx {
            if tx.send(Input::Notice(notice)).is_err() {
                break;
            }
        }
    });
}
