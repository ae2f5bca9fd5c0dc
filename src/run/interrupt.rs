//! What SIGINT and SIGTERM do to a run: the first says what memsched waits for and how
//! to abort, and lets the running step finish (no other starts); the second ends every
//! running step's whole process group; a third ends memsched at once. The watcher's loop
//! uses the same notices ([`waiting_notice`], [`abort_notice`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use signal_hook::consts::{SIGINT, SIGTERM};

use crate::error::{Error, Exit, Result};
use crate::run::live;
use crate::run::runner::{self, Running};

/// Installs the handlers for a one-shot run: `stop` is set by the first signal.
pub(crate) fn install(stop: Arc<AtomicBool>) -> Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .map_err(|source| Error::Signals { source })?;
    std::thread::spawn(move || {
        for (count, signal) in signals.forever().enumerate() {
            match count {
                // Above the running steps' spinners, which redraw below.
                0 => {
                    stop.store(true, Ordering::SeqCst);
                    let notice = waiting_notice(signal, &runner::running());
                    live::bars().suspend(|| eprintln!("{notice}"));
                }
                1 => {
                    let notice = abort_notice(&runner::abort_all());
                    live::bars().suspend(|| eprintln!("{notice}"));
                }
                _ => {
                    eprintln!("memsched: a third signal: exiting now");
                    std::process::exit(i32::from(Exit::Interrupted.code()));
                }
            }
        }
    });
    Ok(())
}

/// "SIGINT" for 2.
fn name(signal: i32) -> String {
    runner::signal_name(signal)
}

/// What the first signal says: what memsched waits for, and how to abort it.
#[must_use]
pub(crate) fn waiting_notice(signal: i32, running: &[Running]) -> String {
    if running.is_empty() {
        return format!(
            "memsched: {}: stopping; no step is running, none will start",
            name(signal)
        );
    }
    let steps: Vec<String> = running.iter().map(ToString::to_string).collect();
    format!(
        "memsched: {}: stopping after {} finishes (no other step will start)\n\
         memsched: press Ctrl-C again to end it now: its whole process group gets SIGTERM, then SIGKILL",
        name(signal),
        steps.join(", ")
    )
}

/// What the second signal says, given what [`runner::abort_all`] ended.
#[must_use]
pub(crate) fn abort_notice(ended: &[Running]) -> String {
    if ended.is_empty() {
        return "memsched: no step is running; ending the run".to_owned();
    }
    let steps: Vec<String> = ended.iter().map(ToString::to_string).collect();
    format!(
        "memsched: ending {}: SIGTERM to its process group, SIGKILL if it lingers",
        steps.join(", ")
    )
}
