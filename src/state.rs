//! The state files: lossless, shape-keeping reads and atomic writes of each JSON document.

pub(crate) mod atomic;
pub mod ingest_hash;
pub mod json_file;
pub(crate) mod run_record;
pub(crate) mod scheduler_log;
pub mod stat;
pub mod task_queue;
pub mod upload_log;
pub(crate) mod watchdog_state;

use std::time::SystemTime;

use serde_json::Value;

/// An integer memsched compares exactly (a nanosecond mtime), read as memsched writes it,
/// a string of digits (exact through jq and JavaScript), or as a plain number.
#[must_use]
pub fn exact_integer(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// Reads an RFC 3339 timestamp as the pipeline's scripts write them: with `Z` or an offset
/// (`+00:00`, as Python's `isoformat()` gives), or without one, taken as UTC.
#[must_use]
pub fn parse_time(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    let parsed = text
        .parse::<jiff::Timestamp>()
        .or_else(|_| format!("{text}Z").parse::<jiff::Timestamp>())
        .ok()?;
    SystemTime::try_from(parsed).ok()
}

/// The RFC 3339 form (UTC, milliseconds) every timestamp memsched writes takes. Any time
/// a state file can hold is written, before 1970 included (Python's `datetime.min` is year
/// 1); a time beyond what RFC 3339 can say (year 9999) is written as that limit.
#[must_use]
pub fn timestamp(t: SystemTime) -> String {
    let at = jiff::Timestamp::try_from(t).unwrap_or_else(|_| {
        if t < SystemTime::UNIX_EPOCH {
            jiff::Timestamp::MIN
        } else {
            jiff::Timestamp::MAX
        }
    });
    format!("{at:.3}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn timestamps_with_z_offsets_or_none_are_read() {
        let at = UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        assert_eq!(parse_time("2026-11-18T11:06:40Z"), Some(at));
        assert_eq!(parse_time("2026-11-18T13:06:40+02:00"), Some(at));
        assert_eq!(parse_time("2026-11-18T11:06:40"), Some(at));
        assert_eq!(parse_time(&timestamp(at)), Some(at));
        assert_eq!(parse_time("yesterday"), None);
    }

    #[test]
    fn times_before_1970_and_far_ahead_are_written_not_panicked_on() {
        let year_one = parse_time("0001-01-01T00:00:00").unwrap();
        assert_eq!(timestamp(year_one), "0001-01-01T00:00:00.000Z");
        let sixties = parse_time("1960-01-01T00:00:00Z").unwrap();
        assert_eq!(timestamp(sixties), "1960-01-01T00:00:00.000Z");
        assert_eq!(parse_time(&timestamp(sixties)), Some(sixties));
        let far = UNIX_EPOCH + Duration::from_secs(400_000_000_000);
        assert!(timestamp(far).starts_with("9999-12-"));
        assert_eq!(
            timestamp(UNIX_EPOCH + Duration::from_millis(1_795_000_000_123)),
            "2026-11-18T11:06:40.123Z"
        );
    }
}
