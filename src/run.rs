//! What every action runs with: its context, the one job skeleton, their reports, the
//! command runner and interrupts.

pub mod context;
pub mod interrupt;
pub mod job;
pub mod progress;
pub mod report;
pub mod runner;
