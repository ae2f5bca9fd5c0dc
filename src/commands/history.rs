//! `memsched log` (alias `history`): recent runs from scheduler_log.json as a table (when,
//! trigger, each action's outcome and counts, duration, what woke it), filtered by action
//! and outcome, or one run's full record by its number. Reads only; writes nothing.

use std::io::{self, Write};

use serde_json::{Value, json};

use crate::commands::output;
use crate::config::paths::Paths;
use crate::error::{Error, Exit, Result};
use crate::model::action::Action;
use crate::state::scheduler_log;

/// The version of `log --json`'s shape.
const LOG_VERSION: u32 = 1;
/// Characters of "woken by" shown in the table.
const WOKEN_CHARS: usize = 40;

/// Which runs to show.
#[derive(Debug, Clone)]
pub struct Filter {
    /// Runs in which one of these actions ran, failed or was interrupted.
    pub action: Option<Vec<Action>>,
    /// Runs in which some action ended so (as written: "failed", "nothing-to-do").
    pub outcome: Option<&'static str>,
    /// The newest this many of what is left.
    pub limit: usize,
}

impl Filter {
    fn keeps(&self, run: &Value) -> bool {
        let actions = actions(run);
        let by_action = self.action.as_ref().is_none_or(|wanted| {
            actions.iter().any(|a| {
                wanted.iter().any(|w| a["action"] == w.name())
                    && !matches!(a["outcome"].as_str(), Some("skipped" | "nothing-to-do"))
            })
        });
        let by_outcome = self
            .outcome
            .is_none_or(|o| actions.iter().any(|a| a["outcome"] == o));
        by_action && by_outcome
    }
}

fn actions(run: &Value) -> &[Value] {
    run["actions"].as_array().map_or(&[], Vec::as_slice)
}

/// Prints the table, or run `number`'s full record.
pub fn print(
    paths: &Paths,
    number: Option<usize>,
    filter: &Filter,
    json: bool,
    color: bool,
) -> Result<Exit> {
    let runs = scheduler_log::read(paths)?;
    if let Some(n) = number {
        let Some(run) = n.checked_sub(1).and_then(|i| runs.get(i)) else {
            return Err(Error::Usage(format!(
                "no run {n} in {}: it keeps runs 1 to {} (see `memsched log`)",
                paths.scheduler_log.display(),
                runs.len()
            )));
        };
        let _ = output::print(json, run, |out, run| write_record(out, n, run, color));
        return Ok(Exit::Ok);
    }
    let mut shown: Vec<(usize, &Value)> = runs
        .iter()
        .enumerate()
        .map(|(i, r)| (i + 1, r))
        .filter(|(_, r)| filter.keeps(r))
        .collect();
    let excess = shown.len().saturating_sub(filter.limit);
    shown.drain(..excess);
    let doc = json!({
        "version": LOG_VERSION,
        "runs": shown.iter().map(|(n, r)| {
            let mut r = (*r).clone();
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

/// "2026-11-26 03:48:22" from the stored "2026-11-26T03:48:22.124Z".
fn when(at: &str) -> String {
    at.get(..19).unwrap_or(at).replace('T', " ")
}

fn count(a: &Value, keys: &[&str]) -> u64 {
    keys.iter().filter_map(|k| a["counts"][k].as_u64()).sum()
}

/// One action's cell: its outcome and what it got done ("ran 4 ok", "FAILED 3 ok 1 bad").
fn cell(a: Option<&Value>) -> (String, &'static str) {
    let Some(a) = a else {
        return ("·".to_owned(), "2");
    };
    let outcome = a["outcome"].as_str().unwrap_or("?");
    let ok = count(a, &["done", "uploaded"]);
    let bad = count(a, &["failed", "failed_again", "dead"]);
    let (word, code) = match outcome {
        "ran" => ("ran", "32"),
        "nothing-to-do" => ("none", "2"),
        "would-run" => ("would", "36"),
        "skipped" => ("skipped", "33"),
        "failed" => ("FAILED", "31;1"),
        "interrupted" => ("INTERRUPTED", "31;1"),
        other => (other, ""),
    };
    let mut text = word.to_owned();
    if let Some(status) = a["details"]["status"].as_str() {
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

fn write_table(
    out: &mut (impl Write + ?Sized),
    runs: &[(usize, &Value)],
    color: bool,
) -> io::Result<()> {
    if runs.is_empty() {
        return writeln!(out, "no runs recorded (or none that match)");
    }
    // Each action's column is as wide as its widest cell.
    let widths = Action::ALL.map(|action| {
        runs.iter()
            .map(|(_, run)| {
                let a = actions(run).iter().find(|a| a["action"] == action.name());
                cell(a).0.chars().count()
            })
            .chain([action.name().len()])
            .max()
            .unwrap_or(0)
    });
    write!(
        out,
        "{:>4}  {:<19}  {:<8}  {:>8}",
        "#", "started (UTC)", "trigger", "took"
    )?;
    for (action, width) in Action::ALL.iter().zip(widths) {
        write!(out, "  {:<width$}", action.name())?;
    }
    writeln!(out, "  woken by")?;
    for (n, run) in runs {
        write!(
            out,
            "{n:>4}  {:<19}  {:<8}  {:>8}",
            when(run["started_at"].as_str().unwrap_or("")),
            run["trigger"].as_str().unwrap_or("?"),
            took(run["duration_ms"].as_u64().unwrap_or(0)),
        )?;
        for (action, width) in Action::ALL.iter().zip(widths) {
            let a = actions(run).iter().find(|a| a["action"] == action.name());
            let (text, code) = cell(a);
            write!(out, "  {}", paint(&text, width, code, color))?;
        }
        let woken: Vec<&str> = run["woken_by"]
            .as_array()
            .map(|w| w.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut woke = woken.first().copied().unwrap_or("-").to_owned();
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
    run: &Value,
    color: bool,
) -> io::Result<()> {
    let s = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
    let modes: Vec<String> = run["modes"]
        .as_array()
        .map(|m| m.iter().map(s).collect())
        .unwrap_or_default();
    writeln!(
        out,
        "run {n}: {} {}run of {}{}",
        s(&run["trigger"]),
        if run["dry_run"] == true { "dry " } else { "" },
        modes.join(", "),
        if run["interrupted"] == true {
            " (interrupted)"
        } else {
            ""
        }
    )?;
    writeln!(
        out,
        "  started {}  finished {}  took {}  pid {}  exit {}",
        s(&run["started_at"]),
        s(&run["finished_at"]),
        took(run["duration_ms"].as_u64().unwrap_or(0)),
        s(&run["pid"]),
        s(&run["exit_code"])
    )?;
    for w in run["woken_by"].as_array().into_iter().flatten() {
        writeln!(out, "  woken by {}", s(w))?;
    }
    for a in actions(run) {
        let (text, code) = cell(Some(a));
        writeln!(
            out,
            "  {:<9} {} {}",
            s(&a["action"]),
            paint(&text, 15, code, color),
            s(&a["summary"])
        )?;
        if let Some(e) = a["error"].as_str() {
            writeln!(out, "      error: {e}")?;
        }
        for f in a["failed_items"].as_array().into_iter().flatten() {
            writeln!(out, "      failed {}: {}", s(&f["item"]), s(&f["error"]))?;
        }
        for c in a["commands"].as_array().into_iter().flatten() {
            let argv: Vec<String> = c["argv"]
                .as_array()
                .map(|a| a.iter().map(s).collect())
                .unwrap_or_default();
            writeln!(
                out,
                "      command {}  (exit {}, {} ms{}{})",
                argv.join(" "),
                s(&c["exit_code"]),
                s(&c["duration_ms"]),
                if c["timed_out"] == true {
                    ", timed out"
                } else {
                    ""
                },
                if c["interrupted"] == true {
                    ", interrupted"
                } else {
                    ""
                }
            )?;
            for line in c["stderr_tail"].as_array().into_iter().flatten() {
                writeln!(out, "        stderr: {}", s(line))?;
            }
        }
        for r in a["reasons"].as_array().into_iter().flatten() {
            writeln!(out, "      {}", s(r))?;
        }
    }
    Ok(())
}
