//! What every action runs with: one pass over the actions, their reports, the command runner and interrupts.

pub mod interrupt;
pub mod progress;
pub mod report;
pub mod runner;
