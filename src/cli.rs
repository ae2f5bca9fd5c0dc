//! The command line, as clap parses it. Nothing here is interpreted; see `app`. Flags that
//! make no sense together are refused here ([`Cli::conflicts`]), never ignored.

use std::path::PathBuf;

use clap::{ArgAction, CommandFactory, Parser, Subcommand, ValueEnum};

use crate::model::outcome::Outcome;
use crate::model::trigger::Trigger;

const AFTER_LONG_HELP: &str = "\
Examples:
  memsched --paths ~/memory/paths.json              run the watcher in the foreground
  memsched --once                                   reconcile once (the paths.json here or above), then exit
  memsched --once --mode ingest --dry-run           show what ingest would send, and why
  memsched status                                   the pipeline's health; exit 1 when not ok
  memsched log --outcome failed                     recent runs that failed
  memsched autostart enable --systemd               start the watcher with your session

Environment:
  MEMSCHED_PATHS   the pipeline's paths.json when --paths is not given
  RUST_LOG         log filter (e.g. memsched=debug); -v and -q override its level
  NO_COLOR         no colour when set (as --color never); --color always still colours
  JOURNAL_STREAM   set by systemd: log lines carry journald priorities (<3> error ...)

Exit status: 0 all good or nothing to do; 1 an action failed (status: not ok);
2 bad usage or configuration; 3 another process holds a lock the run needed;
130 interrupted by SIGINT or SIGTERM.";

/// memsched keeps a memory vector database pipeline healthy: it decides when the
/// pipeline's own steps (ingest, retry, upload, watchdog) run and on what, runs them
/// safely, and records what happened.
///
/// Every run plans from the files on disk, so running it twice, late or after a crash
/// costs time, never a file.
#[derive(Debug, Parser)]
// Command-line switches are independent booleans by nature.
#[allow(clippy::struct_excessive_bools)]
#[command(name = "memsched", version, about, long_about)]
#[command(
    after_help = "Exit status: 0 all good or nothing to do; 1 an action failed; \
2 bad usage or configuration; 3 another process holds a lock the run needed; \
130 interrupted. More with --help.",
    after_long_help = AFTER_LONG_HELP
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// The pipeline's paths.json [default: $MEMSCHED_PATHS, else the nearest paths.json here or above]
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        env = "MEMSCHED_PATHS",
        hide_env = true
    )]
    pub paths: Option<PathBuf>,

    /// The rules file [default: watch-rules.toml beside paths.json, else ./watch-rules.toml]
    #[arg(long, global = true, value_name = "FILE")]
    pub rules: Option<PathBuf>,

    /// Plan and run every requested action once, then exit (for cron or by hand)
    #[arg(long)]
    pub once: bool,

    /// Which actions to run; repeat, or give a comma list (`ingest,upload`) [default: all]
    #[arg(long, value_enum, value_name = "MODE", value_delimiter = ',')]
    pub mode: Vec<Mode>,

    /// Plan and print what would run; run nothing, write nothing (with --once)
    #[arg(long, requires = "once")]
    pub dry_run: bool,

    /// Print the machine-readable record instead of the text (--once, check, status, log)
    #[arg(long, global = true)]
    pub json: bool,

    /// Let this run send every removal it finds, beyond [actions.ingest] and
    /// [actions.upload] max_remove (with --once): you have checked that those files are
    /// really gone
    #[arg(long, requires = "once")]
    pub confirm_removals: bool,

    /// Watch by polling every 2 s instead of inotify (network file systems need this)
    #[arg(long, conflicts_with = "once")]
    pub poll: bool,

    /// What started this run, as recorded in scheduler_log.json (with --once)
    #[arg(long, value_enum, value_name = "WHO", requires = "once")]
    pub trigger: Option<TriggerArg>,

    /// When to colour the output [default: auto: on a terminal, unless NO_COLOR is set]
    #[arg(long, global = true, value_enum, value_name = "WHEN", default_value_t = ColorChoice::Auto, hide_default_value = true)]
    pub color: ColorChoice,

    /// More log lines (-v debug, -vv trace); overrides RUST_LOG's level. -v also passes each
    /// step's output through to stderr as it comes, every line prefixed with its action
    #[arg(short, long, global = true, action = ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Fewer log lines (-q errors only, -qq none) and no spinner for a running step
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub quiet: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load and validate paths.json and the rules, resolve every command and judge who can write it; print what they resolve to
    Check,
    /// Show the pipeline's health (exit 0 ok, 1 degraded or failing); writes nothing
    Status,
    /// Recent runs as a table, or one run's full record by its number
    #[command(alias = "history")]
    Log {
        /// The number of one run (as the table shows it): print its full record
        run: Option<usize>,
        /// Only runs in which this action ran, failed or was interrupted
        #[arg(long, value_enum, value_name = "ACTION")]
        action: Option<Mode>,
        /// Only runs in which some action ended so
        #[arg(long, value_enum, value_name = "OUTCOME")]
        outcome: Option<OutcomeArg>,
        /// How many runs to show, newest last
        #[arg(short = 'n', long, default_value_t = 20, value_name = "N")]
        limit: usize,
    },
    /// Acknowledge memories that are gone: drop their records, so they stop being pending
    /// removals (for pipelines without a `remove` command, or removals memsched held back)
    Forget {
        /// Gone memories, relative to data_dir (or absolute inside it)
        #[arg(value_name = "PATH", required_unless_present = "all")]
        memories: Vec<PathBuf>,
        /// Every recorded memory whose file is gone
        #[arg(long, conflicts_with = "memories")]
        all: bool,
        /// Show what would be forgotten; write nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// List the tasks in task_queue.json, or revive, drop or clear them under its lock
    #[command(args_conflicts_with_subcommands = true)]
    Tasks {
        #[command(subcommand)]
        action: Option<TasksAction>,
        /// Only tasks with this status (pending, running, done, failed, dead)
        #[arg(long, value_name = "STATUS")]
        status: Option<String>,
    },
    /// Start the watcher with your desktop session (XDG autostart or a systemd user unit)
    Autostart {
        #[command(subcommand)]
        action: AutostartAction,
    },
    /// Print a shell completion script (e.g. `memsched completions bash > ~/.local/share/bash-completion/completions/memsched`)
    Completions {
        /// The shell to complete for
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), or install it where man(1) finds it
    Man {
        /// Write it to $XDG_DATA_HOME/man/man1/memsched.1 (default ~/.local/share/man/man1)
        /// instead of stdout
        #[arg(long)]
        install: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TasksAction {
    /// Make dead or failed tasks pending again, attempts reset: retry takes them on at its next run
    Revive {
        /// Task ids, as `memsched tasks` lists them
        #[arg(value_name = "ID", required = true)]
        ids: Vec<String>,
    },
    /// Remove tasks from the queue (a failed ingest file's task dropped, ingest sends the file afresh)
    Drop {
        /// Task ids, as `memsched tasks` lists them
        #[arg(value_name = "ID", required = true)]
        ids: Vec<String>,
    },
    /// Remove every done task
    ClearDone,
    /// Remove done tasks last updated longer ago than AGE (`done_keep` in [actions.retry] does it at every retry run)
    Prune {
        /// e.g. 7d, 12h
        #[arg(long, value_name = "AGE", value_parser = humantime::parse_duration)]
        older_than: std::time::Duration,
    },
}

#[derive(Debug, Subcommand)]
pub enum AutostartAction {
    /// Write the entry for these --paths and --rules
    Enable {
        /// A systemd user unit instead of an XDG autostart entry
        #[arg(long)]
        systemd: bool,
    },
    /// Remove the entries memsched wrote for this pipeline
    Disable,
    /// Show this pipeline's entries and what they run
    Status,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    All,
    Retry,
    Ingest,
    Upload,
    Watchdog,
}

/// The outcomes `log --outcome` filters on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutcomeArg {
    Ran,
    NothingToDo,
    Skipped,
    Failed,
    Interrupted,
}

impl OutcomeArg {
    /// The outcome it names, as the run record types it.
    #[must_use]
    pub fn outcome(self) -> Outcome {
        match self {
            OutcomeArg::Ran => Outcome::Ran,
            OutcomeArg::NothingToDo => Outcome::NothingToDo,
            OutcomeArg::Skipped => Outcome::Skipped,
            OutcomeArg::Failed => Outcome::Failed,
            OutcomeArg::Interrupted => Outcome::Interrupted,
        }
    }
}

/// `--color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

impl ColorChoice {
    /// Whether to colour a stream that is (or is not) a terminal. `auto` colours a
    /// terminal unless NO_COLOR is set to anything but the empty string (no-color.org).
    #[must_use]
    pub fn colors(self, terminal: bool) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            }
        }
    }
}

/// The triggers a one-shot run may be recorded under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TriggerArg {
    Manual,
    Cron,
}

impl From<TriggerArg> for Trigger {
    fn from(arg: TriggerArg) -> Trigger {
        match arg {
            TriggerArg::Manual => Trigger::Manual,
            TriggerArg::Cron => Trigger::Cron,
        }
    }
}

impl Cli {
    /// Parses the command line, refusing flags that make no sense together (clap's own
    /// error and exit status 2).
    #[must_use]
    pub fn parse_checked() -> Cli {
        let cli = Cli::parse();
        if let Some(message) = cli.conflicts() {
            Cli::command()
                .error(clap::error::ErrorKind::ArgumentConflict, message)
                .exit();
        }
        cli
    }

    /// What clap's declarations cannot say: the run flags belong to runs, not to
    /// subcommands, and `--json` has no meaning for the watcher.
    #[must_use]
    pub fn conflicts(&self) -> Option<String> {
        let run_flags = [
            (self.once, "--once"),
            (!self.mode.is_empty(), "--mode"),
            (self.poll, "--poll"),
            (self.dry_run, "--dry-run"),
            (self.trigger.is_some(), "--trigger"),
        ];
        match &self.command {
            Some(command @ (Command::Completions { .. } | Command::Man { .. })) if self.json => {
                Some(format!(
                    "--json has no meaning for '{}': it prints a script or a page, not a report",
                    command.name()
                ))
            }
            Some(command) => run_flags.iter().find(|(given, _)| *given).map(|(_, flag)| {
                format!(
                    "{flag} is for runs and the watcher; it cannot be used with the '{}' subcommand",
                    command.name()
                )
            }),
            None if self.json && !self.once => Some(
                "--json prints a run's record: use it with --once (the watcher logs to stderr)"
                    .to_owned(),
            ),
            None => None,
        }
    }
}

impl Command {
    /// The subcommand's name, as typed.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Command::Check => "check",
            Command::Status => "status",
            Command::Log { .. } => "log",
            Command::Forget { .. } => "forget",
            Command::Tasks { .. } => "tasks",
            Command::Autostart { .. } => "autostart",
            Command::Completions { .. } => "completions",
            Command::Man { .. } => "man",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
