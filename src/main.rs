//! The memsched binary: parse the command line, run, print the error chain once, exit.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = memsched::cli::Cli::parse();
    // The watcher narrates what it does; one-shot runs print a summary instead.
    let watching = cli.command.is_none() && !cli.once;
    let default = if watching { "info" } else { "warn" };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default)).init();
    match memsched::app::run(&cli) {
        Ok(exit) => ExitCode::from(exit.code()),
        Err(e) => {
            eprintln!("memsched: error: {}", e.chain());
            if let Some(hint) = e.hint() {
                eprintln!("memsched: hint: {hint}");
            }
            ExitCode::from(e.exit().code())
        }
    }
}
