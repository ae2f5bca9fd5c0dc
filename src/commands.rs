//! Subcommands that read the state files and print: status, log, check, autostart, and the run
//! summary; and the operator's levers on them: forget, tasks.

pub mod autostart;
pub mod check;
pub mod forget;
pub mod history;
pub mod output;
pub mod status;
pub mod summary;
pub mod tasks;
