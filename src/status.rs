//! `memsched status`: the pipeline's health on one screen (or as JSON), read fresh from the
//! state files, writing nothing.

use std::io::{self, Write};
use std::time::SystemTime;

use crate::actions::watchdog::health::{self, Health, Status};
use crate::error::Exit;
use crate::output;
use crate::paths::Paths;
use crate::rules::Rules;

/// Prints the health; ok exits 0, degraded or failing 1.
#[must_use]
pub fn print(paths: &Paths, rules: &Rules, json: bool, color: bool) -> Exit {
    let h = health::assess(paths, rules, &[], SystemTime::now());
    // A closed stdout (`| head`) does not change the verdict.
    let _ = output::print(json, &h, |out, h| write(out, h, color));
    match h.status {
        Status::Ok => Exit::Ok,
        Status::Degraded | Status::Failing => Exit::ActionFailed,
    }
}

/// The one-screen form.
pub fn write(out: &mut (impl Write + ?Sized), h: &Health, color: bool) -> io::Result<()> {
    let word = h.status.name().to_uppercase();
    let word = if color {
        let code = match h.status {
            Status::Ok => "32;1",
            Status::Degraded => "33;1",
            Status::Failing => "31;1",
        };
        format!("\x1b[{code}m{word}\x1b[0m")
    } else {
        word
    };
    writeln!(out, "memsched status: {word}  (checked {})", h.checked_at)?;
    let tasks: Vec<String> = h.tasks.iter().map(|(s, n)| format!("{n} {s}")).collect();
    writeln!(
        out,
        "  tasks      {}",
        if tasks.is_empty() {
            "none".to_owned()
        } else {
            tasks.join(", ")
        }
    )?;
    let u = &h.uploads;
    writeln!(
        out,
        "  uploads    {} outstanding ({} failed), {} given up, {} skipped, {} uploaded",
        u.outstanding, u.failed, u.given_up, u.skipped, u.uploaded
    )?;
    match (h.data_files, h.unindexed_files) {
        (Some(files), Some(stale)) => {
            writeln!(out, "  data       {files} files, {stale} not yet indexed")?;
        }
        _ => writeln!(out, "  data       not checked (ingest not configured)")?,
    }
    if h.last_runs.is_empty() {
        writeln!(out, "  last runs  none recorded")?;
    }
    for (i, (action, run)) in h.last_runs.iter().enumerate() {
        let label = if i == 0 { "last runs" } else { "" };
        writeln!(
            out,
            "  {label:<10} {action:<9} {} at {}: {}",
            run.outcome, run.at, run.summary
        )?;
    }
    for (name, pid) in &h.locks {
        writeln!(out, "  running    {name} (pid {pid} holds {name}.lock)")?;
    }
    if !h.problems.is_empty() {
        writeln!(out, "  problems")?;
        for p in &h.problems {
            writeln!(out, "    - {p}")?;
        }
    }
    Ok(())
}
