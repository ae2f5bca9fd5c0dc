//! memsched: the maintenance scheduler of a personal memory vector database pipeline.
//!
//! Every run *plans* from the state on disk, then *executes* the pipeline's own steps and
//! *records* what happened, so a missed or repeated trigger costs time, never a file.

// The docs are built with --document-private-items (they are for the people working on
// memsched, not a library's users), so a public item's doc may link a crate-private one.
#![allow(rustdoc::private_intra_doc_links)]

pub mod actions;
pub mod app;
pub mod cli;
pub(crate) mod commands;
pub mod config;
pub(crate) mod daemon;
pub mod error;
pub mod model;
pub mod os;
pub mod reconcile;
pub mod run;
pub mod state;
pub(crate) mod watch;
