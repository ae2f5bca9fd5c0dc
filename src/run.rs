//! What every action runs with: its context, the one job skeleton, their reports, the
//! command runner, the resident steps kept between batches, what a running step shows
//! live, and interrupts.

pub(crate) mod context;
pub(crate) mod interrupt;
pub(crate) mod job;
pub(crate) mod live;
pub(crate) mod progress;
pub mod report;
pub(crate) mod resident;
pub(crate) mod runner;
