//! The memsched binary: parse the command line, run, print the error chain once, exit.

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = memsched::cli::Cli::parse_checked();
    memsched::logging::init(&cli);
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
