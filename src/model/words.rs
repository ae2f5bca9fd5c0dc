//! Numbers and words for people: a noun that agrees with its count ("1 file", "2 files")
//! and a time from now ("in 67 s"), so every summary reads true.

use std::time::{Duration, SystemTime};

/// "1 file", "0 files", "3 batches": `count` and the noun agreeing with it.
#[must_use]
pub fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `one` or `many`, agreeing with `n` (for a noun whose count was already written).
#[must_use]
pub fn noun<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}

/// How far ahead a time is told by its year.
const FAR: Duration = Duration::from_secs(1000 * 86_400);

/// How long from `now` until `at`: "in 67 s", "in 12 min", "in 3 h", "in 2 days", or
/// "now" when it is due; a time 1,000 days or more away by its year: "not before year
/// 9999" (Python's `datetime.max`, a far-future time a script wrote for "never").
#[must_use]
pub fn from_now(at: SystemTime, now: SystemTime) -> String {
    match at.duration_since(now) {
        Ok(left) if left >= FAR => {
            format!("not before year {}", super::clock::civil_utc(at).year())
        }
        Ok(left) if left >= Duration::from_secs(1) => format!("in {}", span(left)),
        _ => "now".to_owned(),
    }
}

/// How long ago `at` was: "67 s ago", "3 h ago", or "just now".
#[must_use]
pub fn ago(at: SystemTime, now: SystemTime) -> String {
    match now.duration_since(at) {
        Ok(past) if past >= Duration::from_secs(1) => format!("{} ago", span(past)),
        _ => "just now".to_owned(),
    }
}

/// "67 s", "12 min", "3 h", "2 days": one unit, rounded down, at most three digits.
#[must_use]
pub fn span(d: Duration) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nouns_agree_with_their_numbers() {
        assert_eq!(count(1, "file", "files"), "1 file");
        assert_eq!(count(0, "file", "files"), "0 files");
        assert_eq!(count(2, "batch", "batches"), "2 batches");
        assert_eq!(noun(1, "task", "tasks"), "task");
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
        assert_eq!(ago(now - Duration::from_secs(5), now), "5 s ago");
    }
}
