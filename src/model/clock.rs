//! [`Clock`]: the wall clock, injected. Actions decide on time (what is due, when a
//! backoff ends, what counts as stuck) by asking the clock in their context, never
//! `SystemTime::now()` directly, so a test can hold time still or move it.

use std::time::SystemTime;

/// Where an action reads the time.
pub trait Clock: Sync {
    fn now(&self) -> SystemTime;
}

/// The real wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that stands still: a plan decides against the one instant its run started,
/// and a test holds time where it wants it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frozen(pub SystemTime);

impl Clock for Frozen {
    fn now(&self) -> SystemTime {
        self.0
    }
}
