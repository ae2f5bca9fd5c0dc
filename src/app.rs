//! Turns the parsed command line into a run: finds paths.json and the rules, dispatches
//! the subcommand, prints the result, and chooses the exit status.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use signal_hook::consts::{SIGINT, SIGTERM};
use std::path::{Path, PathBuf};

use crate::action::Action;
use crate::autostart;
use crate::cli::{AutostartAction, Cli, Command, Mode};
use crate::error::{Error, Exit, Result};
use crate::output;
use crate::paths::Paths;
use crate::reconcile::{self, Request};
use crate::report::exit_of;
use crate::rules::Rules;
use crate::state::ingest_hash::Held;
use crate::{check, daemon};
use crate::{status, summary};

/// Runs memsched as the command line asks.
pub fn run(cli: &Cli) -> Result<Exit> {
    let paths = Paths::load(&paths_file(cli))?;
    let rules_file = rules_file(cli, &paths)?;
    let rules = Rules::load(&rules_file)?;
    match &cli.command {
        Some(Command::Check) => check::print(&paths, &rules, cli.json).map(|()| Exit::Ok),
        Some(Command::Autostart { action }) => autostart(action, &paths.file, &rules_file),
        Some(Command::Status) => Ok(status::print(
            &paths,
            &rules,
            cli.json,
            std::io::stdout().is_terminal(),
        )),
        None if cli.once => Ok(once(cli, &paths, &rules)),
        None if cli.dry_run => Err(Error::Usage(
            "--dry-run plans one run: use it with --once".to_owned(),
        )),
        None => {
            let options = daemon::Options {
                allowed: actions_of(&cli.mode),
                event_queue: event_queue()?,
                poll: cli.poll,
            };
            daemon::run(&paths, &rules_file, rules, &options)
        }
    }
}

fn autostart(action: &AutostartAction, paths_file: &Path, rules_file: &Path) -> Result<Exit> {
    let config = autostart::config_home()?;
    let lines = match action {
        AutostartAction::Enable { systemd } => {
            let kind = if *systemd {
                autostart::Kind::Systemd
            } else {
                autostart::Kind::Desktop
            };
            vec![autostart::enable(
                kind,
                &config,
                &autostart::watcher_argv(paths_file, rules_file)?,
            )?]
        }
        AutostartAction::Disable => autostart::disable(&config)?,
        AutostartAction::Status => autostart::status(&config),
    };
    for line in lines {
        println!("{line}");
    }
    Ok(Exit::Ok)
}

/// `MEMSCHED_EVENT_QUEUE`: how many debounced batches the watcher may fall behind by
/// before it drops them and reconciles everything (a diagnostic knob; tests use 1).
fn event_queue() -> Result<usize> {
    match std::env::var("MEMSCHED_EVENT_QUEUE") {
        Err(_) => Ok(daemon::DEFAULT_EVENT_QUEUE),
        Ok(text) => text.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
            Error::Usage(format!(
                "MEMSCHED_EVENT_QUEUE={text:?}: expected a positive number"
            ))
        }),
    }
}

fn once(cli: &Cli, paths: &Paths, rules: &Rules) -> Exit {
    let stop = Arc::new(AtomicBool::new(false));
    // The first SIGINT or SIGTERM lets the running step finish and records it; a second one
    // ends memsched at once (the step, in its own process group, runs on).
    for signal in [SIGINT, SIGTERM] {
        let _ = signal_hook::flag::register_conditional_shutdown(signal, 130, Arc::clone(&stop));
        let _ = signal_hook::flag::register(signal, Arc::clone(&stop));
    }
    let request = Request {
        actions: actions_of(&cli.mode),
        trigger: cli.trigger.into(),
        dry_run: cli.dry_run,
        progress: !cli.json,
        woken_by: Vec::new(),
        stop,
        changed: None,
        manifest: Held::default(),
    };
    let record = reconcile::run(paths, rules, &request);
    let logged = reconcile::record(paths, rules, &record);
    // A closed stdout (`| head`) is not a failure of the run.
    let color = std::io::stdout().is_terminal();
    let _ = output::print(cli.json, &record, |out, record| {
        summary::write(out, record, color)
    });
    match logged {
        Ok(()) => exit_of(&record.actions),
        Err(e) => {
            eprintln!("memsched: error: the run was not recorded: {}", e.chain());
            Exit::ActionFailed
        }
    }
}

/// The actions `--mode` asks for, in run order; none or `all` means every action.
fn actions_of(modes: &[Mode]) -> Vec<Action> {
    if modes.is_empty() || modes.contains(&Mode::All) {
        return Action::ALL.to_vec();
    }
    Action::ALL
        .into_iter()
        .filter(|a| {
            modes.iter().any(|m| match m {
                Mode::All => true,
                Mode::Retry => *a == Action::Retry,
                Mode::Ingest => *a == Action::Ingest,
                Mode::Upload => *a == Action::Upload,
                Mode::Watchdog => *a == Action::Watchdog,
            })
        })
        .collect()
}

/// `--paths`, else `$MEMSCHED_PATHS` (clap reads both), else `./paths.json`.
fn paths_file(cli: &Cli) -> PathBuf {
    cli.paths
        .clone()
        .unwrap_or_else(|| PathBuf::from("paths.json"))
}

/// `--rules`, else watch-rules.toml beside paths.json, else ./watch-rules.toml.
fn rules_file(cli: &Cli, paths: &Paths) -> Result<PathBuf> {
    if let Some(rules) = &cli.rules {
        return Ok(rules.clone());
    }
    let beside = paths.home.join("watch-rules.toml");
    let here = Path::new("watch-rules.toml").to_path_buf();
    [beside.clone(), here.clone()]
        .into_iter()
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Error::Usage(format!(
                "no rules file: looked for {} and {}; pass --rules FILE",
                beside.display(),
                std::path::absolute(&here).unwrap_or(here).display()
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_map_to_actions_in_run_order() {
        assert_eq!(actions_of(&[]), Action::ALL);
        assert_eq!(
            actions_of(&[Mode::Upload, Mode::Retry]),
            [Action::Retry, Action::Upload]
        );
        assert_eq!(actions_of(&[Mode::Ingest, Mode::All]), Action::ALL);
    }
}
