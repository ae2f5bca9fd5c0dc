//! `memsched status`: the pipeline's health on one screen (or as JSON), read fresh from the
//! state files, writing nothing. A rules file that does not load is one of the problems
//! shown, never a reason to show nothing.

use std::io::{self, Write};
use std::path::Path;
use std::time::SystemTime;

use crate::actions::watchdog::health::{self, Health, Status, TaskLine};
use crate::commands::output;
use crate::config::paths::Paths;
use crate::config::rules::Rules;
use crate::error::{Error, Exit};
use crate::model::task_status::TaskStatus;
use crate::model::watcher_kind::WatcherKind;
use crate::model::words;

/// Prints the health; ok exits 0, degraded or failing 1. `rules` is what the rules file
/// gave: when it does not load, the health is judged with built-in defaults (no action
/// configured) and the error is the first problem.
#[must_use]
pub(crate) fn print(paths: &Paths, rules: Result<&Rules, &Error>, json: bool, color: bool) -> Exit {
    let fallback;
    let (rules, rules_error) = match rules {
        Ok(rules) => (rules, None),
        Err(e) => {
            fallback = Rules::parse(std::path::Path::new("(built-in defaults)"), "")
                .expect("empty rules are valid");
            (&fallback, Some(e))
        }
    };
    let mut h = health::assess(paths, rules, &[], SystemTime::now());
    if let Some(e) = rules_error {
        h.problems
            .insert(0, format!("the rules do not load: {}", e.chain()));
        h.status = h.status.max(Status::Degraded);
    }
    // Without a retry action nothing takes a failed task on again (issue 20 item 3):
    // say so instead of promising a retry that never comes.
    let failed = h.tasks.get(TaskStatus::Failed.name()).copied().unwrap_or(0);
    if !h.retry_configured && failed > 0 {
        for t in &mut h.failed_tasks {
            t.next_attempt_at = None;
        }
        h.problems.push(
            "failed tasks are never retried: no [actions.retry] is configured; add it, or `memsched tasks drop ID` (ingest then sends the file afresh)"
                .to_owned(),
        );
        h.status = h.status.max(Status::Degraded);
    }
    // A closed stdout (`| head`) does not change the verdict.
    let marker = paths.data_dir.join(&rules.pause_file);
    let _ = output::print(json, &h, |out, h| write(out, h, &marker, color));
    match h.status {
        Status::Ok => Exit::Ok,
        Status::Degraded | Status::Failing => Exit::ActionFailed,
    }
}

/// Why health has no data figures: the rules do not load (so no ingest table is known),
/// data_dir is missing, or ingest is not configured. The first two are among its problems.
fn why_data_unchecked(h: &Health) -> String {
    let found = |start: &str| h.problems.iter().find(|p| p.starts_with(start));
    if found("the rules do not load").is_some() {
        "the rules do not load".to_owned()
    } else if let Some(missing) = found("data_dir ").filter(|p| p.ends_with("does not exist")) {
        missing.clone()
    } else {
        "ingest not configured".to_owned()
    }
}

/// The one-screen form; `marker` is the pause marker's path.
pub(crate) fn write(
    out: &mut (impl Write + ?Sized),
    h: &Health,
    marker: &Path,
    color: bool,
) -> io::Result<()> {
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
    writeln!(
        out,
        "memsched status: {word}  (checked {})",
        words::local_time(&h.checked_at)
    )?;
    writeln!(out, "  watcher    {}", watcher_line(h))?;
    if let Some(line) = pause_line(h, marker) {
        writeln!(out, "  paused     {line}")?;
    }
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
    for t in &h.failed_tasks {
        writeln!(out, "    {}", task_line(t, h.now, h.retry_configured))?;
    }
    let u = &h.uploads;
    let logged = u.outstanding + u.given_up + u.skipped + u.uploaded + u.refused;
    if h.uploads_configured || logged > 0 {
        writeln!(
            out,
            "  uploads    {} outstanding ({} failed), {} given up, {} skipped, {}{} uploaded",
            u.outstanding,
            u.failed,
            u.given_up,
            u.skipped,
            // Refused entries are named only when there are some: they need a person.
            if u.refused > 0 {
                format!("{} refused, ", u.refused)
            } else {
                String::new()
            },
            u.uploaded
        )?;
    }
    match (h.data_files, h.unindexed_files) {
        (Some(files), Some(stale)) => {
            let removals = match h.pending_removals {
                Some(n) if n > 0 => {
                    format!(", {} pending", words::count(n, "removal", "removals"))
                }
                _ => String::new(),
            };
            writeln!(
                out,
                "  data       {}, {stale} not yet indexed{removals}",
                words::count(files, "file", "files")
            )?;
        }
        _ => writeln!(out, "  data       not checked: {}", why_data_unchecked(h))?,
    }
    if h.last_runs.is_empty() {
        writeln!(out, "  last runs  none recorded")?;
    }
    for (i, (action, run)) in h.last_runs.iter().enumerate() {
        let label = if i == 0 { "last runs" } else { "" };
        writeln!(
            out,
            "  {label:<10} {action:<9} {} at {}: {}",
            run.outcome.label(),
            words::local_time(&run.at),
            run.summary
        )?;
    }
    for (name, pid) in &h.locks {
        writeln!(out, "  running    {name} (pid {pid} holds {name}.lock)")?;
    }
    for (name, left) in &h.leftover_locks {
        let pids: Vec<String> = left.pids.iter().map(u32::to_string).collect();
        writeln!(
            out,
            "  leftover   {name}.lock is held by {}, which a step of a killed run left behind: \
             the next {name} run sets it aside; `kill {}` ends it if nothing needs it",
            left.holders,
            pids.join(" ")
        )?;
    }
    if !h.problems.is_empty() {
        writeln!(out, "  problems")?;
        for p in &h.problems {
            writeln!(out, "    - {p}")?;
        }
    }
    Ok(())
}

/// "running (pid 42, inotify, since …)", "not running (stale record from pid 42)" or
/// "not running".
fn watcher_line(h: &Health) -> String {
    match &h.watcher_process {
        None => "not running".to_owned(),
        Some(w) if w.running => {
            let mut parts = vec![format!("pid {}", w.pid)];
            if let Some(kind) = w.kind {
                parts.push(
                    match kind {
                        WatcherKind::Poll => "polling",
                        WatcherKind::Inotify => "inotify",
                    }
                    .to_owned(),
                );
            }
            if let Some(since) = &w.since {
                parts.push(format!("since {}", words::local_time(since)));
            } else if let Some(at) = &w.updated_at {
                parts.push(format!("last report {at}"));
            }
            format!("running ({})", parts.join(", "))
        }
        Some(w) => format!("not running (stale record from pid {})", w.pid),
    }
}

/// Whether runs wait for the pause marker (issue 20 item 7: a forgotten marker is easily
/// missed): the running watcher's pause and since when, or a marker the next watcher
/// will wait on.
fn pause_line(h: &Health, marker: &Path) -> Option<String> {
    let running = h.watcher_process.as_ref().is_some_and(|w| w.running);
    let since = h.watcher.as_ref().and_then(|w| w.paused_since.as_deref());
    match since {
        Some(since) if running => Some(format!(
            "since {}: runs wait until {} is removed",
            words::local_time(since),
            marker.display()
        )),
        _ if marker.exists() => Some(format!(
            "{} exists: a watcher waits until it is removed",
            marker.display()
        )),
        _ => None,
    }
}

/// "failed ingest:a.txt (ingest), attempt 1 of 5: exit 1: boom; next retry in 67 s".
fn task_line(t: &TaskLine, now: SystemTime, retry_configured: bool) -> String {
    let step = t
        .step
        .as_deref()
        .map_or(String::new(), |s| format!(" ({s})"));
    let error = t.last_error.as_deref().unwrap_or("no error recorded");
    let mut line = format!(
        "{} {}{step}, attempt {} of {}: {error}",
        t.status, t.id, t.attempts, t.max_attempts
    );
    if t.status == TaskStatus::Failed.name() && !retry_configured {
        line.push_str("; never retried: no [actions.retry] is configured");
    } else if let (Some(until), Some(step)) = (t.paused_until, &t.step) {
        line.push_str(&format!(
            "; next retry once the circuit breaker for {step} closes, {}",
            words::from_now(until, now)
        ));
    } else if t.status == TaskStatus::Failed.name() {
        match t.next_at {
            Some(at) => line.push_str(&format!("; next retry {}", words::from_now(at, now))),
            None => line.push_str("; next retry on the next run"),
        }
    }
    line
}
