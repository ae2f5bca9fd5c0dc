//! The retry policy shared by retry and upload: after a failed attempt an item is either
//! out of attempts (dead, given up) or falls due again after an exponential backoff with
//! jitter.
//!
//! The jitter is derived from the item's id and attempt number rather than a random
//! source: items that failed together still spread out, and a plan is reproducible.

use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use crate::config::rules::Backoff;

/// What becomes of an item after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterFailure {
    /// It has used all its attempts.
    OutOfAttempts,
    /// It falls due again at this time.
    RetryAt(SystemTime),
}

/// The decision after `attempts` failed attempts (counting the one that just failed) of
/// an item allowed `max_attempts`, at `now`.
#[must_use]
pub(crate) fn after_failure(
    backoff: &Backoff,
    attempts: u64,
    max_attempts: u64,
    item: &str,
    now: SystemTime,
) -> AfterFailure {
    if attempts >= max_attempts {
        AfterFailure::OutOfAttempts
    } else {
        AfterFailure::RetryAt(due_after(backoff, attempts, item, now))
    }
}

/// When an item that failed `attempts` times, the last at `now`, falls due again, whatever
/// its attempts allow: its backoff from now (due at once only at the end of time).
#[must_use]
pub(crate) fn due_after(
    backoff: &Backoff,
    attempts: u64,
    item: &str,
    now: SystemTime,
) -> SystemTime {
    // The rules cap every backoff at 30 days, so this cannot overflow; if the clock itself
    // sits at the end of time, the item is due at once rather than a panic.
    now.checked_add(delay(backoff, attempts, item))
        .unwrap_or(now)
}

/// The wait before attempt `attempts + 1` of `item`, after `attempts` failures (>= 1).
#[must_use]
pub(crate) fn delay(backoff: &Backoff, attempts: u64, item: &str) -> Duration {
    let exponent = i32::try_from(attempts.saturating_sub(1).min(60)).unwrap_or(60);
    let base = backoff.initial.as_secs_f64() * backoff.factor.powi(exponent);
    let spread = 1.0 + (unit(item, attempts) * 2.0 - 1.0) * backoff.jitter;
    let seconds = (base * spread).min(backoff.max.as_secs_f64()).max(0.0);
    // `seconds` is finite and within the cap, but never let a float panic here.
    Duration::try_from_secs_f64(seconds).unwrap_or(backoff.max)
}

/// A number in [0, 1) fixed by `item` and `attempts`.
fn unit(item: &str, attempts: u64) -> f64 {
    let digest = Sha256::new()
        .chain_update(item.as_bytes())
        .chain_update(attempts.to_le_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    // 53 bits fill an f64 mantissa exactly, so the division is exact.
    #[allow(clippy::cast_precision_loss)]
    let fraction = (u64::from_le_bytes(first) >> 11) as f64 / (1u64 << 53) as f64;
    fraction
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Backoff = Backoff {
        initial: Duration::from_secs(30),
        factor: 2.0,
        max: Duration::from_secs(3600),
        jitter: 0.2,
    };

    #[test]
    fn delays_grow_by_the_factor_within_the_jitter_and_stop_at_the_cap() {
        for (attempts, base) in [(1, 30.0), (2, 60.0), (3, 120.0), (5, 480.0)] {
            let d = delay(&B, attempts, "task-1").as_secs_f64();
            assert!(
                (base * 0.8..=base * 1.2).contains(&d),
                "attempt {attempts}: {d}"
            );
        }
        assert_eq!(delay(&B, 40, "task-1"), Duration::from_secs(3600));
    }

    #[test]
    fn jitter_spreads_items_but_is_reproducible() {
        assert_eq!(delay(&B, 2, "a"), delay(&B, 2, "a"));
        let distinct: std::collections::HashSet<_> = (0..20)
            .map(|i| delay(&B, 2, &format!("task-{i}")))
            .collect();
        assert!(distinct.len() > 15);
        let none = Backoff { jitter: 0.0, ..B };
        assert_eq!(delay(&none, 3, "x"), Duration::from_secs(120));
    }
}
