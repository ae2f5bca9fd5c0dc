//! The one-screen summary of a run: a line per action saying what ran, what was skipped
//! and why, and what failed.

use std::io::{self, Write};

use crate::report::{Outcome, RunRecord};

/// Failed items listed under an action before the rest are counted.
const LISTED_FAILURES: usize = 10;

/// Writes the summary of `run`; `color` adds ANSI colours (for a terminal).
pub fn write(out: &mut (impl Write + ?Sized), run: &RunRecord, color: bool) -> io::Result<()> {
    let paint = |outcome: Outcome, text: &str| -> String {
        if !color {
            return text.to_owned();
        }
        let code = match outcome {
            Outcome::Ran => "32",
            Outcome::NothingToDo => "2",
            Outcome::WouldRun => "36",
            Outcome::Skipped => "33",
            Outcome::Failed | Outcome::Interrupted => "31;1",
        };
        format!("\x1b[{code}m{text}\x1b[0m")
    };
    let what = if run.dry_run { "dry run" } else { "run" };
    writeln!(
        out,
        "memsched: {} {what} of {} ({}.{:02} s)",
        run.trigger.name(),
        run.modes.join(", "),
        run.duration_ms / 1000,
        run.duration_ms % 1000 / 10
    )?;
    for action in &run.actions {
        let label = format!("{:<13}", action.outcome.label());
        writeln!(
            out,
            "  {:<9} {} {}",
            action.action.name(),
            paint(action.outcome, &label),
            action.summary
        )?;
        for failed in action.failed_items.iter().take(LISTED_FAILURES) {
            writeln!(out, "      failed {}: {}", failed.item, failed.error)?;
        }
        if action.failed_items.len() > LISTED_FAILURES {
            writeln!(
                out,
                "      … and {} more failed",
                action.failed_items.len() - LISTED_FAILURES
            )?;
        }
        if run.dry_run {
            for reason in &action.reasons {
                writeln!(out, "      {reason}")?;
            }
        }
    }
    Ok(())
}

/// One line per action that failed or was interrupted, and per item it failed on (the
/// first [`LISTED_FAILURES`]): what goes to stderr so cron and journald keep it.
#[must_use]
pub fn failures(run: &RunRecord) -> Vec<String> {
    let mut lines = Vec::new();
    for action in &run.actions {
        match action.outcome {
            Outcome::Failed | Outcome::Interrupted => {}
            Outcome::Ran | Outcome::NothingToDo | Outcome::WouldRun | Outcome::Skipped => {
                continue;
            }
        }
        lines.push(format!(
            "{} {}: {}",
            action.action.name(),
            action.outcome.label(),
            action.summary
        ));
        for failed in action.failed_items.iter().take(LISTED_FAILURES) {
            lines.push(format!(
                "{} failed {}: {}",
                action.action.name(),
                failed.item,
                failed.error
            ));
        }
        if action.failed_items.len() > LISTED_FAILURES {
            lines.push(format!(
                "{} … and {} more failed",
                action.action.name(),
                action.failed_items.len() - LISTED_FAILURES
            ));
        }
    }
    lines
}
