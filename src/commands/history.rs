//! `memsched log` (alias `history`): recent runs from scheduler_log.json as a table (when,
//! trigger, each action's outcome and counts, duration, what woke it), filtered by action
//! and outcome, or one run's full record by its number. Reads only; writes nothing.

use std::io::{self, Write};

use serde_json::{Value, json};

use crate::commands::{output, summary};
use crate::config::paths::Paths;
use crate::error::{Error, Exit, Result};
use crate::model::action::Action;
use crate::model::outcome::Outcome;
use crate::model::words;
use crate::run::report::{ActionReport, RunRecord, count, detail};
use crate::state::scheduler_log::{self, Logged};

/// The version of `log --json`'s shape.
const LOG_VERSION: u32 = 1;
/// Characters of "woken by" shown in the table.
const WOKEN_CHARS: usize = 40;

/// Which runs to show.
#[derive(Debug, Clone)]
pub(crate) struct Filter {
    /// Runs in which one of these actions ran, failed or was interrupted.
    pub action: Option<Vec<Action>>,
    /// Runs in which some action ended so.
    pub outcome: Option<Outcome>,
    /// The newest this many of what is left.
    pub limit: usize,
}

impl Filter {
    fn keeps(&self, run: Option<&RunRecord>) -> bool {
        let actions = actions(run);
        let by_action = self.action.as_ref().is_none_or(|wanted| {
            actions.iter().any(|a| {
                wanted.contains(&a.action)
                    && !matches!(a.outcome, Outcome::Skipped | Outcome::NothingToDo)
            })
        });
        let by_outcome = self
            .outcome
            .is_none_or(|o| actions.iter().any(|a| a.outcome == o));
        by_action && by_outcome
    }
}

/// A run's action reports; none for a slot that does not read as a run.
fn actions(run: Option<&RunRecord>) -> &[ActionReport] {
    run.map_or(&[], |r| r.actions.as_slice())
}

/// Prints the table, or run `number`'s full record. `--json` prints the records as the
/// log holds them.
pub(crate) fn print(
    paths: &Paths,
    number: Option<usize>,
    filter: &Filter,
    json: bool,
    color: bool,
) -> Result<Exit> {
    let runs = scheduler_log::read_logged(paths)?;
    if let Some(n) = number {
        let Some(slot) = runs.iter().find(|r| r.seq == n as u64) else {
            let kept = match (runs.first(), runs.last()) {
                (Some(first), Some(last)) => format!("it keeps runs {} to {}", first.seq, last.seq),
                _ => "it keeps no runs yet".to_owned(),
            };
            return Err(Error::Usage(format!(
                "no run {n} in {}: {kept} (see `memsched log`)",
                paths.scheduler_log.display(),
            )));
        };
        let _ = output::print(json, &slot.written, |out, _| {
            write_record(out, n, slot, color)
        });
        return Ok(Exit::Ok);
    }
    let mut shown: Vec<(usize, &Logged)> = runs
        .iter()
        .map(|r| (usize::try_from(r.seq).unwrap_or(usize::MAX), r))
        .filter(|(_, r)| filter.keeps(r.record.as_ref().ok()))
        .collect();
    let excess = shown.len().saturating_sub(filter.limit);
    shown.drain(..excess);
    let doc = json!({
        "version": LOG_VERSION,
        "runs": shown.iter().map(|(n, r)| {
            let mut r = r.written.clone();
            if let Some(map) = r.as_object_mut() {
                map.insert("number".into(), (*n).into());
            }
            r
        }).collect::<Vec<_>>(),
    });
    let _ = output::print(json, &doc, |out, _| write_table(out, &shown, color));
    Ok(Exit::Ok)
}

/// "0.61 s", "2 min 5 s".
fn took(ms: u64) -> String {
    if ms < 60_000 {
        format!("{}.{:02} s", ms / 1000, ms % 1000 / 10)
    } else {
        format!("{} min {} s", ms / 60_000, ms % 60_000 / 1000)
    }
}

/// "2026-11-26 04:48:22 CET" from the stored "2026-11-26T03:48:22.124Z".
fn when(at: &str) -> String {
    words::local_time(at)
}

/// One action's cell: its outcome and what it got done ("ran 4 ok", "FAILED 3 ok 1 bad").
fn cell(a: Option<&ActionReport>) -> (String, &'static str) {
    let Some(a) = a else {
        return ("·".to_owned(), "2");
    };
    let ok = a.count_of(&count::OK);
    let bad = a.count_of(&count::BAD);
    let word = match a.outcome {
        Outcome::Ran => "ran",
        Outcome::NothingToDo => "none",
        Outcome::WouldRun => "would",
        Outcome::Skipped => "skipped",
        Outcome::Failed => "FAILED",
        Outcome::Interrupted => "INTERRUPTED",
    };
    let code = summary::colour(a);
    let mut text = word.to_owned();
    if let Some(status) = a.details.get(detail::STATUS).and_then(Value::as_str) {
        text.push(' ');
        text.push_str(status);
    } else if ok + bad > 0 {
        text.push_str(&format!(" {ok} ok"));
        if bad > 0 {
            text.push_str(&format!(" {bad} bad"));
        }
    }
    (text, code)
}

fn paint(text: &str, width: usize, code: &str, color: bool) -> String {
    let padded = format!("{text:<width$}");
    if color && !code.is_empty() {
        format!("\x1b[{code}m{padded}\x1b[0m")
    } else {
        padded
    }
}

/// `action`'s report in `run`, if it took part.
fn report_of(run: Option<&RunRecord>, action: Action) -> Option<&ActionReport> {
    actions(run).iter().find(|a| a.action == action)
}

fn write_table(
    out: &mut (impl Write + ?Sized),
    runs: &[(usize, &Logged)],
    color: bool,
) -> io::Result<()> {
    if runs.is_empty() {
        return writeln!(out, "no runs recorded (or none that match)");
    }
    let records: Vec<(usize, Option<&RunRecord>)> = runs
        .iter()
        .map(|(n, slot)| (*n, slot.record.as_ref().ok()))
        .collect();
    // Each action's column is as wide as its widest cell.
    let widths = Action::ALL.map(|action| {
        records
            .iter()
            .map(|(_, run)| cell(report_of(*run, action)).0.chars().count())
            .chain([action.name().len()])
            .max()
            .unwrap_or(0)
    });
    write!(
        out,
        "{:>4}  {:<23}  {:<8}  {:>8}",
        "#", "started", "trigger", "took"
    )?;
    for (action, width) in Action::ALL.iter().zip(widths) {
        write!(out, "  {:<width$}", action.name())?;
    }
    writeln!(out, "  woken by")?;
    for (n, run) in &records {
        // A slot that does not read as a run shows as one that says nothing.
        let (started, trigger, ms, woken) = match run {
            Some(r) => (
                r.started_at.as_str(),
                r.trigger.name(),
                r.duration_ms,
                r.woken_by.as_slice(),
            ),
            None => ("", "?", 0, &[][..]),
        };
        write!(
            out,
            "{n:>4}  {:<23}  {:<8}  {:>8}",
            when(started),
            trigger,
            took(ms),
        )?;
        for (action, width) in Action::ALL.iter().zip(widths) {
            let (text, code) = cell(report_of(*run, *action));
            write!(out, "  {}", paint(&text, width, code, color))?;
        }
        let mut woke = woken.first().map_or("-", String::as_str).to_owned();
        if woke.chars().count() > WOKEN_CHARS {
            woke = woke.chars().take(WOKEN_CHARS - 1).collect::<String>() + "…";
        }
        if woken.len() > 1 {
            woke.push_str(&format!(" (+{} more)", woken.len() - 1));
        }
        writeln!(out, "  {woke}")?;
    }
    writeln!(out, "(`memsched log N` shows run N in full)")
}

fn write_record(
    out: &mut (impl Write + ?Sized),
    n: usize,
    slot: &Logged,
    color: bool,
) -> io::Result<()> {
    let run = match &slot.record {
        Ok(run) => run,
        Err(e) => return writeln!(out, "run {n}: not a run record memsched reads ({e})"),
    };
    writeln!(
        out,
        "run {n}: {} {}run of {}{}",
        run.trigger.name(),
        if run.dry_run { "dry " } else { "" },
        run.modes.join(", "),
        if run.interrupted() {
            " (interrupted)"
        } else {
            ""
        }
    )?;
    writeln!(
        out,
        "  started {}  finished {}  took {}  pid {}  exit {}",
        when(&run.started_at),
        when(&run.finished_at),
        took(run.duration_ms),
        run.pid,
        run.exit_code
    )?;
    for w in &run.woken_by {
        writeln!(out, "  woken by {w}")?;
    }
    for a in &run.actions {
        let (text, code) = cell(Some(a));
        writeln!(
            out,
            "  {:<9} {} {}",
            a.action.name(),
            paint(&text, 15, code, color),
            a.summary
        )?;
        if let Some(e) = &a.error {
            writeln!(out, "      error: {e}")?;
        }
        for f in &a.failed_items {
            writeln!(out, "      failed {}: {}", f.item, f.error)?;
        }
        for c in &a.commands {
            // `null` when a signal ended it, as the record says.
            let exit = c
                .exit_code
                .map_or_else(|| "null".to_owned(), |code| code.to_string());
            writeln!(
                out,
                "      command {}  (exit {exit}, {} ms{}{})",
                c.argv.join(" "),
                c.duration_ms,
                if c.timed_out { ", timed out" } else { "" },
                if c.interrupted { ", interrupted" } else { "" }
            )?;
            // Both tails: a step may say why it failed on either (a record written
            // before stdout was kept has none, and shows none).
            for line in &c.stdout_tail {
                writeln!(out, "        stdout: {line}")?;
            }
            for line in &c.stderr_tail {
                writeln!(out, "        stderr: {line}")?;
            }
        }
        for r in &a.reasons {
            writeln!(out, "      {r}")?;
        }
    }
    Ok(())
}
