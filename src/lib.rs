//! memsched: the maintenance scheduler of a personal memory vector database pipeline.
//!
//! Every run *plans* from the state on disk, then *executes* the pipeline's own steps and
//! *records* what happened, so a missed or repeated trigger costs time, never a file.

pub mod accounts;
pub mod action;
pub mod actions;
pub mod allocator;
pub mod app;
pub mod autostart;
pub mod check;
pub mod cli;
pub mod clock;
pub mod daemon;
pub mod error;
pub mod event_kind;
pub mod file_key;
pub mod history;
pub mod interrupt;
pub mod lock;
pub mod logging;
pub mod output;
pub mod paths;
pub mod placeholder;
pub mod progress;
pub mod reconcile;
pub mod report;
pub mod rules;
pub mod runner;
pub mod scope;
pub mod sd_notify;
pub mod sources;
pub mod state;
pub mod status;
pub mod summary;
pub mod task_status;
pub mod trigger;
pub mod trust;
pub mod upload_status;
pub mod walk;
pub mod watch;
pub mod watcher_kind;
pub mod words;
