//! The one-screen summary of a run: a line per action saying what ran, what was skipped
//! and why, and what failed.

use std::io::{self, Write};

use serde_json::Value;

use crate::run::report::{ActionReport, Outcome, RunRecord, detail};

/// Failed items listed under an action before the rest are counted.
const LISTED_FAILURES: usize = 10;

/// The ANSI colour of an action's outcome: green ran, yellow skipped, red failed. A
/// watchdog that ran and judged the pipeline degraded or failing is painted as what it
/// found (issue 20 item 14: a degraded pipeline was green).
pub(crate) fn colour(action: &ActionReport) -> &'static str {
    let health = action.details.get(detail::STATUS).and_then(Value::as_str);
    match (action.outcome, health) {
        (Outcome::Ran, Some("failing")) | (Outcome::Failed | Outcome::Interrupted, _) => "31;1",
        (Outcome::Ran, Some("degraded")) | (Outcome::Skipped, _) => "33",
        (Outcome::Ran, _) => "32",
        (Outcome::NothingToDo, _) => "2",
        (Outcome::WouldRun, _) => "36",
    }
}

/// Writes the summary of `run`; `color` adds ANSI colours (for a terminal).
pub(crate) fn write(
    out: &mut (impl Write + ?Sized),
    run: &RunRecord,
    color: bool,
) -> io::Result<()> {
    let paint = |action: &ActionReport, text: &str| -> String {
        if color {
            format!("\x1b[{}m{text}\x1b[0m", colour(action))
        } else {
            text.to_owned()
        }
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
            paint(action, &label),
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
/// first ten): what goes to stderr so cron and journald keep it.
#[must_use]
pub(crate) fn failures(run: &RunRecord) -> Vec<String> {
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

/// The one line a watcher under systemd shows in `systemctl status` (sd_notify STATUS)
/// after a run: "idle; last run 12:03:04 ok", or naming what failed.
#[must_use]
pub(crate) fn status_line(run: &RunRecord) -> String {
    let at = run.finished_at.get(11..19).unwrap_or(&run.finished_at);
    let bad: Vec<&str> = run
        .actions
        .iter()
        .filter(|a| matches!(a.outcome, Outcome::Failed | Outcome::Interrupted))
        .map(|a| a.action.name())
        .collect();
    if bad.is_empty() {
        format!("idle; last run {at} ok")
    } else {
        format!("idle; last run {at} failed: {}", bad.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::action::Action;
    use crate::model::trigger::Trigger;
    use crate::run::report::ActionReport;

    #[test]
    fn the_status_line_says_when_and_what_failed() {
        let mut run = RunRecord {
            seq: None,
            started_at: "2026-11-26T12:03:01.000Z".to_owned(),
            finished_at: "2026-11-26T12:03:04.500Z".to_owned(),
            duration_ms: 3500,
            trigger: Trigger::Event,
            modes: vec!["ingest".to_owned()],
            dry_run: false,
            woken_by: Vec::new(),
            pid: 1,
            exit_code: 0,
            actions: vec![ActionReport::new(
                Action::Ingest,
                Outcome::Ran,
                "sent 1 file",
            )],
        };
        assert_eq!(status_line(&run), "idle; last run 12:03:04 ok");
        run.actions[0].outcome = Outcome::Failed;
        assert_eq!(status_line(&run), "idle; last run 12:03:04 failed: ingest");
        assert_eq!(failures(&run), ["ingest failed: sent 1 file"]);
    }
}
