//! What every action runs with: its context, the one job skeleton, their reports, the
//! command runner, the resident steps kept between batches, and interrupts.

pub mod context;
pub mod interrupt;
pub mod job;
pub mod progress;
pub mod report;
pub mod resident;
pub mod runner;
