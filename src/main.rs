//! The memsched binary: parse the command line, run, print the error chain once, exit.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = memsched::cli::Cli::parse();
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
