//! Subcommands that read the state files and print: status, log, check, autostart, and the run
//! summary; the manual page; and the operator's levers on them: forget, tasks.

pub(crate) mod autostart;
pub(crate) mod check;
pub(crate) mod forget;
pub(crate) mod history;
pub(crate) mod manual;
pub(crate) mod output;
pub(crate) mod status;
pub(crate) mod summary;
pub(crate) mod tasks;
