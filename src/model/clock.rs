//! [`Clock`]: the wall clock, injected. Actions decide on time (what is due, when a
//! backoff ends, what counts as stuck) by asking the clock in their context, never
//! `SystemTime::now()` directly, so a test can hold time still or move it.

use std::time::{Duration, SystemTime};

/// The UTC calendar time of `t`, whatever its year: the time library's instants stop a
/// little before the end of year 9999 (Python's `datetime.max` is past them), its calendar
/// does not. Times past 9999 are that year's last instant, before year -9999 its first.
#[must_use]
pub(crate) fn civil_utc(t: SystemTime) -> jiff::civil::DateTime {
    let epoch = jiff::civil::DateTime::constant(1970, 1, 1, 0, 0, 0, 0);
    let since = match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(after) => jiff::SignedDuration::try_from(after).ok(),
        Err(before) => jiff::SignedDuration::try_from(before.duration())
            .ok()
            .map(|d| -d),
    };
    let clamp = || {
        if t < SystemTime::UNIX_EPOCH {
            jiff::civil::DateTime::MIN
        } else {
            jiff::civil::DateTime::MAX
        }
    };
    since
        .and_then(|d| epoch.checked_add(d).ok())
        .unwrap_or_else(clamp)
}

/// The instant of a UTC calendar time (the inverse of [`civil_utc`]).
#[must_use]
pub(crate) fn from_civil_utc(at: jiff::civil::DateTime) -> Option<SystemTime> {
    let epoch = jiff::civil::DateTime::constant(1970, 1, 1, 0, 0, 0, 0);
    let since = at.duration_since(epoch);
    let whole = Duration::from_secs(since.as_secs().unsigned_abs())
        + Duration::from_nanos(u64::from(since.subsec_nanos().unsigned_abs()));
    if since.is_negative() {
        SystemTime::UNIX_EPOCH.checked_sub(whole)
    } else {
        SystemTime::UNIX_EPOCH.checked_add(whole)
    }
}

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
