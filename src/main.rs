//! The memsched binary: parse the command line, run, print the error chain once, exit.

use std::io::IsTerminal;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = memsched::cli::Cli::parse_checked();
    memsched::os::logging::init(&memsched::os::logging::LogOptions {
        watching: cli.command.is_none() && !cli.once,
        verbose: cli.verbose,
        quiet: cli.quiet,
        color: cli.color.colors(std::io::stderr().is_terminal()),
    });
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
