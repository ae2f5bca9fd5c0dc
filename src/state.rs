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

use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::model::clock;

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
/// A time past the time library's range (Python's `datetime.max`,
/// `9999-12-31T23:59:59.999999`, is past its last instant) is read as the civil time it
/// says, so a far-future time means "not yet", never "no time" (issue 18 item 17).
#[must_use]
pub fn parse_time(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    let parsed = text
        .parse::<jiff::Timestamp>()
        .or_else(|_| format!("{text}Z").parse::<jiff::Timestamp>());
    match parsed {
        Ok(parsed) => SystemTime::try_from(parsed).ok(),
        Err(_) => parse_civil(text),
    }
}

/// The instant of an RFC 3339 time as its fields say, offset applied, whatever its year
/// (0001 to 9999): what [`parse_time`] falls back on at the edges of the time library's
/// range.
fn parse_civil(text: &str) -> Option<SystemTime> {
    // (the calendar part, whether the offset is west of UTC, its seconds)
    let (civil, west, offset) = if let Some(civil) = text.strip_suffix(['Z', 'z']) {
        (civil, false, 0)
    } else if let Some(at) = text
        .len()
        .checked_sub(6)
        .filter(|at| text.is_char_boundary(*at) && matches!(text.as_bytes()[*at], b'+' | b'-'))
        && text.as_bytes()[at + 3] == b':'
    {
        let hours: u64 = text[at + 1..at + 3].parse().ok()?;
        let minutes: u64 = text[at + 4..].parse().ok()?;
        (
            &text[..at],
            text.as_bytes()[at] == b'-',
            hours * 3600 + minutes * 60,
        )
    } else {
        (text, false, 0)
    };
    let figures = clock::from_civil_utc(civil.parse().ok()?)?;
    let offset = Duration::from_secs(offset);
    // A time at +05:00 is 5 h before the same figures in UTC; at -05:00, 5 h after.
    if west {
        figures.checked_add(offset)
    } else {
        figures.checked_sub(offset)
    }
}

/// The RFC 3339 form (UTC, milliseconds) every timestamp memsched writes takes. Any time
/// a state file can hold is written, before 1970 included (Python's `datetime.min` is year
/// 1), and past the time library's last instant (Python's `datetime.max`) as its calendar
/// time; a time beyond what RFC 3339 can say (year 9999) is written as that limit.
#[must_use]
pub fn timestamp(t: SystemTime) -> String {
    match jiff::Timestamp::try_from(t) {
        Ok(at) => format!("{at:.3}"),
        Err(_) => format!("{:.3}Z", clock::civil_utc(t)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

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
        assert_eq!(timestamp(far), "9999-12-31T23:59:59.999Z");
        let max = "9999-12-31T23:59:59.999Z";
        assert_eq!(timestamp(parse_time(max).unwrap()), max);
        assert_eq!(
            timestamp(UNIX_EPOCH + Duration::from_millis(1_795_000_000_123)),
            "2026-11-18T11:06:40.123Z"
        );
    }

    #[test]
    fn times_past_the_time_librarys_range_are_read_as_they_say() {
        let last = parse_time("9999-12-30T22:00:00Z").unwrap();
        for max in [
            "9999-12-31T23:59:59.999999",
            "9999-12-31T23:59:59Z",
            "9999-12-31T23:59:59+00:00",
            "9999-12-31T23:59:59-05:00",
        ] {
            let at = parse_time(max).unwrap_or_else(|| panic!("{max} not read"));
            assert!(at > last, "{max}");
        }
        let east = parse_time("9999-12-31T23:59:59+05:00").unwrap();
        let utc = parse_time("9999-12-31T23:59:59Z").unwrap();
        assert_eq!(
            utc.duration_since(east).unwrap(),
            Duration::from_secs(5 * 3600)
        );
        assert!(parse_time("-009999-01-01T00:00:00Z").is_some_and(|t| t < UNIX_EPOCH));
        assert_eq!(parse_time("9999-13-31T00:00:00Z"), None);
    }
}
