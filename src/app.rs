//! Turns the parsed command line into a run: finds paths.json and the rules, dispatches
//! the subcommand, prints the result, and chooses the exit status.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::commands::autostart;
use crate::model::action::Action;
use clap::CommandFactory;

use crate::cli::{AutostartAction, Cli, Command, Mode, OutcomeArg, TasksAction, TriggerArg};
use crate::commands::output;
use crate::commands::{check, forget, history, manual, status, summary, tasks};
use crate::config::paths::Paths;
use crate::config::rules::Rules;
use crate::daemon;
use crate::error::{Error, Exit, Result};
use crate::reconcile::{self, Request};
use crate::run::report::exit_of;
use crate::run::{interrupt, live};

/// Runs memsched as the command line asks.
pub fn run(cli: &Cli) -> Result<Exit> {
    let result = dispatch(cli);
    // Scripts read `check --json`: a configuration that does not load is a document on
    // stdout too, beside the message on stderr (issue 20 item 14).
    if let (Err(e), Some(Command::Check), true) = (&result, &cli.command, cli.json) {
        let doc = serde_json::json!({
            "version": 1,
            "ok": false,
            "error": e.chain(),
            "exit": e.exit().code(),
        });
        let _ = output::print(true, &doc, |_, _| Ok(()));
    }
    result
}

fn dispatch(cli: &Cli) -> Result<Exit> {
    // What a running step shows on stderr: its output with -v; in a one-shot run, a
    // spinner while it runs (on a terminal only, and not with --json or -q).
    live::configure(cli.once && !cli.json && cli.quiet == 0, cli.verbose > 0);
    // What needs no pipeline comes first: it works anywhere.
    match &cli.command {
        Some(Command::Completions { shell }) => return Ok(completions(*shell)),
        Some(Command::Man { install }) => return man(*install),
        Some(Command::Autostart { action }) => return autostart(cli, action),
        _ => {}
    }
    let paths = Paths::load(&paths_file(cli))?;
    let stdout_colors = cli.color.colors(std::io::stdout().is_terminal());
    if let Some(Command::Log {
        run,
        action,
        outcome,
        limit,
    }) = &cli.command
    {
        let filter = history::Filter {
            action: action.map(|a| actions_of(&[a])),
            outcome: outcome.map(OutcomeArg::outcome),
            limit: *limit,
        };
        return history::print(&paths, *run, &filter, cli.json, stdout_colors);
    }
    if let Some(Command::Tasks { action, status }) = &cli.command {
        let request = match action {
            None => tasks::Request::List {
                status: status.clone(),
            },
            Some(TasksAction::Revive { ids }) => tasks::Request::Revive(ids.clone()),
            Some(TasksAction::Drop { ids }) => tasks::Request::Drop(ids.clone()),
            Some(TasksAction::ClearDone) => tasks::Request::ClearDone,
            Some(TasksAction::Prune { older_than }) => tasks::Request::Prune(*older_than),
        };
        return tasks::run(&paths, &request, cli.json);
    }
    let rules_file = rules_file(cli, &paths)?;
    let rules = Rules::load(&rules_file);
    match &cli.command {
        // Status shows what it can read even when the rules do not load.
        Some(Command::Status) => Ok(status::print(
            &paths,
            rules.as_ref(),
            cli.json,
            stdout_colors,
        )),
        Some(Command::Check) => check::print(&paths, &rules?, cli.json),
        Some(Command::Forget {
            memories: targets,
            all,
            dry_run,
        }) => forget::run(&paths, targets, *all, *dry_run, cli.json),

        Some(
            Command::Log { .. }
            | Command::Tasks { .. }
            | Command::Completions { .. }
            | Command::Man { .. }
            | Command::Autostart { .. },
        ) => {
            unreachable!("handled before the rules are read")
        }
        None if cli.once => Ok(once(cli, &paths, &rules?, stdout_colors)),
        None => {
            let options = daemon::Options {
                allowed: actions_of(&cli.mode),
                event_queue: event_queue()?,
                poll: cli.poll,
            };
            daemon::run(&paths, &rules_file, rules?, &options)
        }
    }
}

/// `memsched completions SHELL`: the script on stdout.
fn completions(shell: clap_complete::Shell) -> Exit {
    let mut command = Cli::command();
    clap_complete::generate(shell, &mut command, "memsched", &mut std::io::stdout());
    Exit::Ok
}

/// `memsched man`: the manual page (roff) on stdout, or `--install`ed where man finds it.
fn man(install: bool) -> Result<Exit> {
    if install {
        let target = manual::install(Cli::command(), &manual::data_home()?)?;
        println!("{}", target.display());
        if let Some(hint) = manual::unseen_by_man(&target) {
            eprintln!("memsched: note: {hint}");
        }
        return Ok(Exit::Ok);
    }
    match manual::render(Cli::command(), &mut std::io::stdout().lock()) {
        // A closed stdout (`| head`) is not a failure.
        Ok(()) => Ok(Exit::Ok),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(Exit::Ok),
        Err(source) => Err(Error::Output {
            what: "manual page",
            source,
        }),
    }
}

/// `memsched autostart`: `enable` needs this pipeline's paths.json and rules; `status`
/// and `disable` work anywhere (outside a pipeline home they see every pipeline's entries).
fn autostart(cli: &Cli, action: &AutostartAction) -> Result<Exit> {
    let config = autostart::config_home()?;
    let pipeline = Paths::load(&paths_file(cli));
    let lines = match action {
        AutostartAction::Enable { systemd } => {
            let paths = pipeline?;
            let rules_file = rules_file(cli, &paths)?;
            // An entry that would fail at every login is refused now.
            Rules::load(&rules_file)?;
            let kind = if *systemd {
                autostart::Kind::Systemd
            } else {
                autostart::Kind::Desktop
            };
            let home = std::path::absolute(&paths.home).unwrap_or(paths.home.clone());
            vec![autostart::enable(
                kind,
                &config,
                &home,
                &autostart::watcher_argv(&paths.file, &rules_file)?,
            )?]
        }
        AutostartAction::Disable => {
            let home = pipeline
                .ok()
                .map(|p| std::path::absolute(&p.home).unwrap_or(p.home));
            autostart::disable(&config, home.as_deref())?
        }
        AutostartAction::Status => {
            let home = pipeline
                .ok()
                .map(|p| std::path::absolute(&p.home).unwrap_or(p.home));
            let (lines, entries) = autostart::status(&config, home.as_deref());
            let doc = serde_json::json!({"version": 1, "entries": entries});
            let _ = output::print(cli.json, &doc, |out, _| {
                lines.iter().try_for_each(|l| writeln!(out, "{l}"))
            });
            return Ok(Exit::Ok);
        }
    };
    let doc = serde_json::json!({"version": 1, "done": lines});
    let _ = output::print(cli.json, &doc, |out, _| {
        lines.iter().try_for_each(|l| writeln!(out, "{l}"))
    });
    Ok(Exit::Ok)
}

/// `MEMSCHED_EVENT_QUEUE`: how many changes the watcher may fall behind by
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

fn once(cli: &Cli, paths: &Paths, rules: &Rules, color: bool) -> Exit {
    let stop = Arc::new(AtomicBool::new(false));
    // The first SIGINT or SIGTERM lets the running step finish and says how to abort; a
    // second ends the step's process group; either way the run is recorded, exit 130.
    if let Err(e) = interrupt::install(Arc::clone(&stop)) {
        log::warn!("{}: Ctrl-C ends memsched at once", e.chain());
    }
    let request = Request {
        dry_run: cli.dry_run,
        confirm_removals: cli.confirm_removals,
        progress: !cli.json,
        stop: Arc::clone(&stop),
        ..Request::new(
            actions_of(&cli.mode),
            cli.trigger.unwrap_or(TriggerArg::Manual).into(),
        )
    };
    let (record, logged) = reconcile::run_and_record(paths, rules, &request);
    // A resident step lives no longer than the run that started it: EOF on its stdin,
    // and memsched waits for it to exit (issue 19).
    crate::run::resident::stop_all();
    // A closed stdout (`| head`) is not a failure of the run.
    let _ = output::print(cli.json, &record, |out, record| {
        summary::write(out, record, color)
    });
    // Failures also go to stderr, where cron's `2>>file` and journald keep them, unless
    // the summary just showed them on a terminal.
    if cli.json || !std::io::stdout().is_terminal() {
        for line in summary::failures(&record) {
            eprintln!("memsched: error: {line}");
        }
    }
    match logged {
        Ok(()) if record.interrupted() => Exit::Interrupted,
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

/// `--paths`, else `$MEMSCHED_PATHS` (both through clap), else the nearest paths.json in
/// the working folder or a folder above it, as git and cargo find theirs: from Data/ or
/// deeper, the pipeline home's. Named relatively when it is in the working folder.
fn paths_file(cli: &Cli) -> PathBuf {
    let here = PathBuf::from("paths.json");
    if let Some(given) = &cli.paths {
        return given.clone();
    }
    if here.is_file() {
        return here;
    }
    std::env::current_dir()
        .ok()
        .and_then(|cwd| {
            cwd.ancestors()
                .skip(1)
                .map(|folder| folder.join("paths.json"))
                .find(|file| file.is_file())
        })
        .unwrap_or(here)
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
