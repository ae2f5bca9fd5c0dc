//! Integration tests through the real memsched binary, one module per topic.
//!
//! A new test is a home, a run and what it must end with; harness.rs shows the three lines.

// Test helpers panic on the first surprise: that is how they fail a test.
#![allow(clippy::unwrap_used)]

mod harness;
mod util;

mod autostart;
mod batches;
mod cli;
mod config;
mod cron_scale;
mod daily;
mod example;
mod faiss;
mod faults;
mod fresh_saves;
mod history;
mod hostile;
mod hostile3;
mod hostile4;
mod hostile5;
mod hostile6;
mod hostile_manifest;
mod hostile_steps;
mod hostile_watcher;
mod ingest;
mod interrupt;
mod locks;
mod manifest;
mod no_loss;
mod no_loss_watcher;
mod notify;
mod operator;
mod operator2;
mod properties;
mod reaction;
mod removal;
mod resident;
mod retry;
mod retry_batched;
mod retry_groups;
mod state_files;
mod status;
mod unattended;
mod upload;
mod upload_behind;
mod upload_confine;
mod upload_interval;
mod watchdog;
mod watcher;
mod words;
