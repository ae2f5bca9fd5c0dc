//! The command line, as clap parses it. Nothing here is interpreted; see `app`.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::trigger::Trigger;

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
2 bad usage or configuration; 3 another process holds a lock the run needed."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// The pipeline's paths.json [default: $MEMSCHED_PATHS, else ./paths.json]
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

    /// Which actions to run; repeat for several [default: all]
    #[arg(long, value_enum, value_name = "MODE")]
    pub mode: Vec<Mode>,

    /// Plan and print what would run; run nothing, write nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Print the machine-readable record instead of the summary
    #[arg(long, global = true)]
    pub json: bool,

    /// Watch by polling every 2 s instead of inotify (network file systems need this)
    #[arg(long)]
    pub poll: bool,

    /// What started this run, as recorded in scheduler_log.json
    #[arg(long, value_enum, default_value_t = TriggerArg::Manual, value_name = "WHO")]
    pub trigger: TriggerArg,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load and validate paths.json and the rules; print what they resolve to
    Check,
    /// Show the pipeline's health (exit 0 ok, 1 degraded or failing); writes nothing
    Status,
    /// Start the watcher with your desktop session (XDG autostart or a systemd user unit)
    Autostart {
        #[command(subcommand)]
        action: AutostartAction,
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
    /// Remove the entries memsched wrote
    Disable,
    /// Show the entries and what they run
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
