//! `memsched check`: what paths.json and the rules resolve to, whether each state file
//! can be read, whether every command can be found and may run (no program or script
//! others can write), and where the rules leave gaps, so a configuration can be verified
//! before anything runs.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::commands::output;
use crate::config::paths::Paths;
use crate::config::rules::{Backoff, CommandSpec, Rules};
use crate::error::{Exit, Result};
use crate::model::action::Action;
use crate::model::scope::Scope;
use crate::run::runner::program;
use crate::state::json_file;

/// The version of `check --json`'s shape.
const CHECK_VERSION: u32 = 1;

/// Prints the resolved configuration (as JSON with `json`). A command that cannot be
/// found fails the check (exit 2, each named on stderr); gaps in the rules are warnings.
#[allow(clippy::unnecessary_wraps)] // one signature for every subcommand app dispatches
pub(crate) fn print(paths: &Paths, rules: &Rules, json: bool) -> Result<Exit> {
    let report = describe(paths, rules);
    let _ = output::print(json, &report, |out, report| write_text(out, report));
    for w in report["warnings"].as_array().into_iter().flatten() {
        eprintln!("memsched: warning: {}", w.as_str().unwrap_or(""));
    }
    let missing: Vec<&Value> = report["commands"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["found"].is_null() || !c["refused"].is_null())
        .collect();
    for c in &missing {
        let action = c["action"].as_str().unwrap_or("");
        match c["refused"].as_str() {
            Some(why) => eprintln!("memsched: error: the {action} command will not run: {why}"),
            None => eprintln!(
                "memsched: error: the {action} command {} {}",
                c["program"],
                c["problem"].as_str().unwrap_or("cannot be found")
            ),
        }
    }
    Ok(if missing.is_empty() {
        Exit::Ok
    } else {
        Exit::Usage
    })
}

/// Every configured command, where its program resolves, and why it would be refused
/// (a program or script others can write), as a run would judge it.
fn commands(paths: &Paths, rules: &Rules) -> Vec<Value> {
    let configured: [(Action, Option<&CommandSpec>); 4] = [
        (Action::Retry, rules.retry.as_ref().map(|r| &r.command)),
        (Action::Ingest, rules.ingest.as_ref().map(|i| &i.command)),
        (Action::Upload, rules.upload.as_ref().map(|u| &u.command)),
        (
            Action::Watchdog,
            rules.watchdog.as_ref().and_then(|w| w.command.as_ref()),
        ),
    ];
    configured
        .into_iter()
        .filter_map(|(action, c)| Some((action, c?.argv.first()?, c?)))
        .map(|(action, name, c)| {
            let path_var = program::path_of(&[]);
            match program::resolve(name.as_ref(), &paths.home, path_var.as_deref()) {
                Ok(found) => {
                    let scripts = program::scripts(paths, rules, &c.argv);
                    let refused = program::check(name.as_ref(), &paths.home, path_var.as_deref(), &scripts)
                        .err()
                        .map(|e| e.to_string());
                    json!({"action": action.name(), "program": name, "found": found, "problem": null, "refused": refused})
                }
                Err(why) => json!({"action": action.name(), "program": name, "found": null, "problem": why, "refused": null}),
            }
        })
        .collect()
}

/// Where the rules leave a configured action deaf to changes the watcher could hear.
fn gaps(paths: &Paths, rules: &Rules) -> Vec<String> {
    let runs = |scope: Scope, action: Action| {
        rules
            .rules
            .iter()
            .any(|r| r.scope == scope && r.run.contains(&action))
    };
    let mut warnings = paths.doubts.clone();
    if !paths.data_dir.is_dir() {
        warnings.push(format!(
            "data_dir {} does not exist: nothing can be ingested until it does",
            paths.data_dir.display()
        ));
    }
    if rules.ingest.is_some() && !runs(Scope::Data, Action::Ingest) {
        warnings.push(
            "ingest is configured but no rule runs it on changes in data_dir: the watcher ingests only at startup and every tick".to_owned(),
        );
    }
    if rules.ingest.is_some() && rules.retry.is_none() {
        warnings.push(
            "ingest is configured without [actions.retry]: a file the step fails on is queued in task_queue.json and never sent again until its content changes (or `memsched tasks drop ID` drops its task); add [actions.retry] to retry failed files".to_owned(),
        );
    }
    let Some(upload) = &rules.upload else {
        return warnings;
    };
    for source in &upload.sources {
        // The folder part before the first glob character.
        let literal: PathBuf = Path::new(source)
            .components()
            .take_while(|c| {
                !c.as_os_str()
                    .to_string_lossy()
                    .contains(['*', '?', '[', '{'])
            })
            .collect();
        let climbs = literal
            .components()
            .any(|c| c == std::path::Component::ParentDir);
        let dir = paths.home.join(&literal);
        // A change in data_dir is routed by the rules; anywhere else under the home the
        // watcher watches the sources' folders itself and wakes upload (see watch::change).
        if dir.starts_with(&paths.data_dir) && !climbs {
            if !runs(Scope::Data, Action::Upload) {
                warnings.push(format!(
                    "upload source {source:?} lies in data_dir but no rule in \"data\" runs upload: its changes are queued only at startup and every tick"
                ));
            }
        } else if climbs || !dir.starts_with(&paths.home) {
            warnings.push(format!(
                "upload source {source:?} lies outside the pipeline home, which the watcher does not watch: its changes are queued only at startup and every tick"
            ));
        }
    }
    warnings
}

fn folder_state(path: &Path) -> &'static str {
    if path.is_dir() { "exists" } else { "missing" }
}

fn file_state(path: &Path) -> String {
    match json_file::read(path) {
        Ok(None) => "missing: starts empty".to_owned(),
        Ok(Some(_)) => "ok".to_owned(),
        Err(e) => e.chain(),
    }
}

fn command_json(c: &CommandSpec) -> Value {
    json!({"argv": c.argv, "timeout": humantime::format_duration(c.timeout).to_string()})
}

fn backoff_json(b: &Backoff) -> Value {
    json!({
        "initial": humantime::format_duration(b.initial).to_string(),
        "factor": b.factor,
        "max": humantime::format_duration(b.max).to_string(),
        "jitter": b.jitter,
    })
}

fn describe(paths: &Paths, rules: &Rules) -> Value {
    let mut actions = serde_json::Map::new();
    for action in Action::ALL {
        let value = match action {
            Action::Ingest => rules.ingest.as_ref().map(|i| {
                json!({
                    "command": command_json(&i.command),
                    "pass_files": i.pass_files,
                    "resident": i.resident.is_some(),
                    "idle_exit": i.resident.and_then(|r| r.idle_exit).map(|d| humantime::format_duration(d).to_string()),
                    "batch_size": i.batch_size,
                    "settle": humantime::format_duration(i.settle).to_string(),
                    "include": i.include,
                    "exclude": i.exclude,
                })
            }),
            Action::Retry => rules.retry.as_ref().map(|r| {
                json!({
                    "command": command_json(&r.command),
                    "max_attempts": r.max_attempts,
                    "parallel": r.parallel,
                    "weights": r.weights,
                    "backoff": backoff_json(&r.backoff),
                    "stuck_after": humantime::format_duration(r.stuck_after).to_string(),
                    "breaker": {
                        "failures": r.breaker.failures,
                        "cooldown": humantime::format_duration(r.breaker.cooldown).to_string(),
                    },
                })
            }),
            Action::Upload => rules.upload.as_ref().map(|u| {
                json!({
                    "command": command_json(&u.command),
                    "remote": u.remote,
                    "max_attempts": u.max_attempts,
                    "backoff": backoff_json(&u.backoff),
                    "sources": u.sources,
                })
            }),
            Action::Watchdog => rules.watchdog.as_ref().map(
                |w| json!({"command": w.command.as_ref().map(command_json), "notify": w.notify}),
            ),
        };
        actions.insert(action.name().to_owned(), value.unwrap_or(Value::Null));
    }
    let state_files: serde_json::Map<String, Value> = paths
        .state_files()
        .into_iter()
        .map(|(name, path)| {
            (
                name.to_owned(),
                json!({"path": path, "state": file_state(path)}),
            )
        })
        .collect();
    json!({
        "version": CHECK_VERSION,
        "paths_file": paths.file,
        "rules_file": rules.file,
        "home": paths.home,
        "data_dir": {"path": paths.data_dir, "state": folder_state(&paths.data_dir)},
        "index_dir": {"path": paths.index_dir, "state": folder_state(&paths.index_dir)},
        "state_dir": {"path": paths.state_dir, "state": folder_state(&paths.state_dir)},
        "state_files": state_files,
        "settings": {
            "debounce": humantime::format_duration(rules.debounce).to_string(),
            "max_wait": humantime::format_duration(rules.max_wait).to_string(),
            "tick": humantime::format_duration(rules.tick).to_string(),
            "log_keep": rules.log_keep,
            "pause_file": rules.pause_file,
        },
        "actions": actions,
        "rules": rules.rules.iter().map(|r| json!({
            "name": r.name, "in": r.scope, "paths": r.paths, "on": r.on,
            "run": r.run.iter().map(|a| a.name()).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "commands": commands(paths, rules),
        "warnings": gaps(paths, rules),
    })
}

fn write_text(out: &mut (impl Write + ?Sized), r: &Value) -> std::io::Result<()> {
    let s = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    writeln!(out, "paths.json  {}", s(&r["paths_file"]))?;
    writeln!(out, "rules       {}", s(&r["rules_file"]))?;
    writeln!(out, "home        {}  (commands run here)", s(&r["home"]))?;
    for key in ["data_dir", "index_dir", "state_dir"] {
        writeln!(
            out,
            "{key:<11} {}  ({})",
            s(&r[key]["path"]),
            s(&r[key]["state"])
        )?;
    }
    writeln!(out, "\nstate files")?;
    if let Some(files) = r["state_files"].as_object() {
        for (name, f) in files {
            writeln!(out, "  {name:<15} {}  ({})", s(&f["path"]), s(&f["state"]))?;
        }
    }
    let st = &r["settings"];
    writeln!(
        out,
        "\nsettings    debounce {}, max_wait {}, tick {}, log_keep {}, pause_file {}",
        s(&st["debounce"]),
        s(&st["max_wait"]),
        s(&st["tick"]),
        s(&st["log_keep"]),
        s(&st["pause_file"])
    )?;
    writeln!(out, "\nactions")?;
    if let Some(actions) = r["actions"].as_object() {
        for (name, a) in actions {
            if a.is_null() {
                writeln!(out, "  {name:<9} not configured")?;
                continue;
            }
            let command = match a["command"]["argv"].as_array() {
                Some(argv) => argv.iter().map(s).collect::<Vec<_>>().join(" "),
                None => "(no command)".to_owned(),
            };
            let mut extras: Vec<String> = Vec::new();
            if let Some(obj) = a.as_object() {
                for (k, v) in obj {
                    if k != "command" {
                        extras.push(format!("{k} {}", s(v)));
                    }
                }
            }
            if let Some(t) = a["command"]["timeout"].as_str() {
                extras.insert(0, format!("timeout {t}"));
            }
            writeln!(
                out,
                "  {name:<9} {command}\n            {}",
                extras.join(", ")
            )?;
        }
    }
    writeln!(out, "\nrules")?;
    match r["rules"].as_array() {
        Some(list) if !list.is_empty() => {
            for rule in list {
                writeln!(
                    out,
                    "  {:<20} in {} {} on {} -> {}",
                    s(&rule["name"]),
                    s(&rule["in"]),
                    s(&rule["paths"]),
                    s(&rule["on"]),
                    s(&rule["run"])
                )?;
            }
        }
        _ => writeln!(out, "  (none: only --once runs do anything)")?,
    }
    writeln!(out, "\ncommands")?;
    for c in r["commands"].as_array().into_iter().flatten() {
        let found = match (&c["found"], &c["refused"]) {
            (Value::Null, _) => format!("NOT FOUND: {} {}", s(&c["program"]), s(&c["problem"])),
            (found, Value::Null) => s(found),
            (found, why) => format!("{}  REFUSED: {}", s(found), s(why)),
        };
        writeln!(out, "  {:<9} {found}", s(&c["action"]))?;
    }
    Ok(())
}
