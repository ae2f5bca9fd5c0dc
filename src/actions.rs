//! The pipeline actions memsched schedules, and what each one plans, runs and records.
//! Each supplies its load, its pure plan and its execution to the one skeleton in
//! [`crate::run::job`]; the context they all get is [`crate::run::context::Context`].

pub mod ingest;
pub(crate) mod retry;
pub(crate) mod retry_policy;
pub(crate) mod upload;
pub(crate) mod walk;
pub(crate) mod watchdog;

/// The watcher's early hashes, by the name the daemon's prehasher knows them.
pub use ingest::Prehashed;
