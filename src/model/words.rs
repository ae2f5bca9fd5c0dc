//! Numbers and words for people: a noun that agrees with its count ("1 file", "2 files")
//! and a time from now ("in 67 s"), so every summary reads true.

use std::time::{Duration, SystemTime};

/// "1 file", "0 files", "3 batches": `count` and the noun agreeing with it.
#[must_use]
pub(crate) fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// How far ahead a time is told by its year.
const FAR: Duration = Duration::from_secs(1000 * 86_400);

/// How long from `now` until `at`: "in 67 s", "in 12 min", "in 3 h", "in 2 days", or
/// "now" when it is due; a time 1,000 days or more away by its year: "not before year
/// 9999" (Python's `datetime.max`, a far-future time a script wrote for "never").
#[must_use]
pub(crate) fn from_now(at: SystemTime, now: SystemTime) -> String {
    match at.duration_since(now) {
        Ok(left) if left >= FAR => {
            format!("not before year {}", super::clock::civil_utc(at).year())
        }
        Ok(left) if left >= Duration::from_secs(1) => format!("in {}", span(left)),
        _ => "now".to_owned(),
    }
}

/// "67 s", "12 min", "3 h", "2 days": one unit, rounded down, at most three digits.
#[must_use]
pub(crate) fn span(d: Duration) -> String {
    let s = d.as_secs();
    if s < 120 {
        format!("{s} s")
    } else if s < 120 * 60 {
        format!("{} min", s / 60)
    } else if s < 48 * 3600 {
        format!("{} h", s / 3600)
    } else {
        count(
            usize::try_from(s / 86_400).unwrap_or(usize::MAX),
            "day",
            "days",
        )
    }
}

/// A stored time ("2026-11-26T03:48:22.124Z") as people read it: to the second, in the
/// local time zone (TZ, else /etc/localtime), with its name ("2026-11-26 04:48:22 CET").
/// Files keep UTC; text that does not parse is shown as it is.
#[must_use]
pub(crate) fn local_time(stored: &str) -> String {
    match stored.parse::<jiff::Timestamp>() {
        Ok(at) => at
            .to_zoned_datetime(jiff::tz::TimeZone::system())
            .strftime("%Y-%m-%d %H:%M:%S %Z")
            .to_string(),
        Err(_) => stored.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nouns_agree_with_their_numbers() {
        assert_eq!(count(1, "file", "files"), "1 file");
        assert_eq!(count(0, "file", "files"), "0 files");
        assert_eq!(count(2, "batch", "batches"), "2 batches");
    }

    #[test]
    fn times_from_now_use_one_unit() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let secs = |n| now + Duration::from_secs(n);
        assert_eq!(from_now(secs(67), now), "in 67 s");
        assert_eq!(from_now(secs(720), now), "in 12 min");
        assert_eq!(from_now(secs(3 * 3600), now), "in 3 h");
        assert_eq!(from_now(secs(3 * 86_400), now), "in 3 days");
        assert_eq!(from_now(secs(999 * 86_400), now), "in 999 days");
        assert_eq!(from_now(secs(1000 * 86_400), now), "not before year 1972");
        assert_eq!(from_now(now - Duration::from_secs(5), now), "now");
    }
}
