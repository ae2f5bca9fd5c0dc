//! Circuit breakers: when `failures` consecutive tasks of one step fail with the same
//! error class, that step's retries pause for `cooldown` instead of burning every task's
//! attempts on an outage. Open breakers are kept in the retry report of scheduler_log.json,
//! so later runs honour them.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::rules::BreakerConfig;
use crate::model::action::Action;
use crate::model::outcome::Outcome;
use crate::run::report::{ActionReport, detail};
use crate::run::runner::CommandReport;
use crate::state::{parse_time, timestamp};

/// Characters of the last output line that make up an error class.
const CLASS_CHARS: usize = 80;

/// A step whose retries are paused until `until`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OpenBreaker {
    pub step: String,
    /// The error class that tripped it.
    pub class: String,
    pub until: SystemTime,
}

/// A breaker as the retry report's `details.breakers` keeps it; field order is key order.
#[derive(Serialize, Deserialize)]
struct Written {
    step: String,
    class: String,
    until: String,
}

impl OpenBreaker {
    #[must_use]
    pub(crate) fn to_json(&self) -> Value {
        let written = Written {
            step: self.step.clone(),
            class: self.class.clone(),
            until: timestamp(self.until),
        };
        serde_json::to_value(written).expect("strings always serialise")
    }

    /// One kept breaker; `None` when it is not one (a hand edit), which is passed over.
    fn from_json(v: &Value) -> Option<OpenBreaker> {
        let written = Written::deserialize(v).ok()?;
        Some(OpenBreaker {
            until: parse_time(&written.until)?,
            step: written.step,
            class: written.class,
        })
    }
}

/// The breakers still open at `now`, from the newest run that has a retry report (one
/// not skipped: a skipped retry decided nothing). `runs` come oldest first, each as its
/// action reports (a [`crate::run::report::RunRecord`] from the log, or this run's
/// reports so far). No breaker pauses longer than `max_pause` (the configured
/// `cooldown`) from `now`: an `until` further ahead (what a forward clock jump, or a hand
/// edit, leaves) is brought back to `now + max_pause` (issue 21 item 6).
#[must_use]
pub(crate) fn open_from_log<R, I>(runs: I, now: SystemTime, max_pause: Duration) -> Vec<OpenBreaker>
where
    R: AsRef<[ActionReport]>,
    I: IntoIterator<Item = R>,
    I::IntoIter: DoubleEndedIterator,
{
    let kept = runs.into_iter().rev().find_map(|run| {
        let retry = run
            .as_ref()
            .iter()
            .find(|a| a.action == Action::Retry && a.outcome != Outcome::Skipped)?;
        let kept = retry
            .details
            .get(detail::BREAKERS)
            .and_then(Value::as_array);
        Some(kept.cloned().unwrap_or_default())
    });
    kept.unwrap_or_default()
        .iter()
        .filter_map(OpenBreaker::from_json)
        .filter(|b| b.until > now)
        .map(|mut b| {
            let latest = now.checked_add(max_pause).unwrap_or(b.until);
            b.until = b.until.min(latest);
            b
        })
        .collect()
}

/// What a failure looks like for the breaker: how the command ended plus its last output
/// line with each number blanked to `#`, so "HTTP 503 after 31s" and "HTTP 502 after 9s"
/// are one class.
#[must_use]
pub(super) fn error_class(report: &CommandReport) -> String {
    let how = if report.timed_out {
        "timeout".to_owned()
    } else if let Some(code) = report.exit_code {
        format!("exit {code}")
    } else {
        format!("signal {}", report.signal.unwrap_or(0))
    };
    let line = report.stderr_tail.last().or(report.stdout_tail.last());
    match line {
        Some(line) => {
            let mut shape = String::new();
            for c in line.chars().take(CLASS_CHARS) {
                match (c.is_ascii_digit(), shape.ends_with('#')) {
                    (true, true) => {}
                    (true, false) => shape.push('#'),
                    (false, _) => shape.push(c),
                }
            }
            format!("{how}: {shape}")
        }
        None => how,
    }
}

/// Counts consecutive failures per step during a run and opens breakers.
#[derive(Debug)]
pub(super) struct Tracker {
    config: BreakerConfig,
    streaks: HashMap<String, (String, usize)>,
    open: Vec<OpenBreaker>,
}

impl Tracker {
    #[must_use]
    pub(super) fn new(config: BreakerConfig, open: Vec<OpenBreaker>) -> Tracker {
        Tracker {
            config,
            streaks: HashMap::new(),
            open,
        }
    }

    #[must_use]
    pub(super) fn is_open(&self, step: &str, now: SystemTime) -> bool {
        self.open.iter().any(|b| b.step == step && b.until > now)
    }

    /// Notes a task's result; returns the breaker this failure opened, if any.
    pub(super) fn record(
        &mut self,
        step: &str,
        failure: Option<&str>,
        now: SystemTime,
    ) -> Option<OpenBreaker> {
        let Some(class) = failure else {
            self.streaks.remove(step);
            return None;
        };
        let streak = self
            .streaks
            .entry(step.to_owned())
            .or_insert_with(|| (class.to_owned(), 0));
        if streak.0 == class {
            streak.1 += 1;
        } else {
            *streak = (class.to_owned(), 1);
        }
        if streak.1 < self.config.failures || self.is_open(step, now) {
            return None;
        }
        let breaker = OpenBreaker {
            step: step.to_owned(),
            class: class.to_owned(),
            until: now + self.config.cooldown,
        };
        self.open.push(breaker.clone());
        Some(breaker)
    }

    /// Every breaker open at `now`, for the report.
    #[must_use]
    pub(super) fn open_at(&self, now: SystemTime) -> Vec<OpenBreaker> {
        self.open
            .iter()
            .filter(|b| b.until > now)
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn same_class_failures_in_a_row_open_the_breaker_and_success_resets() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let mut t = Tracker::new(
            BreakerConfig {
                failures: 3,
                cooldown: Duration::from_secs(60),
            },
            Vec::new(),
        );
        assert!(t.record("upload", Some("exit 1: quota"), now).is_none());
        assert!(t.record("upload", Some("exit 1: quota"), now).is_none());
        assert!(t.record("upload", None, now).is_none());
        assert!(t.record("upload", Some("exit 1: quota"), now).is_none());
        assert!(t.record("upload", Some("exit 2: other"), now).is_none());
        assert!(t.record("ingest", Some("exit 2: other"), now).is_none());
        assert!(t.record("upload", Some("exit 2: other"), now).is_none());
        let opened = t.record("upload", Some("exit 2: other"), now).unwrap();
        assert_eq!(opened.until, now + Duration::from_secs(60));
        assert!(t.is_open("upload", now));
        assert!(!t.is_open("ingest", now));
        assert!(!t.is_open("upload", now + Duration::from_secs(61)));
    }

    #[test]
    fn open_breakers_come_back_from_the_newest_retry_report() {
        let now = parse_time("2026-11-26T12:00:00Z").unwrap();
        let retry = |outcome: Outcome, breakers: Value| {
            let mut report = ActionReport::new(Action::Retry, outcome, "");
            report.details.insert(detail::BREAKERS.into(), breakers);
            report
        };
        let runs = vec![
            vec![retry(
                Outcome::Ran,
                json!([
                {"step": "old", "class": "x", "until": "2026-11-26T13:00:00Z"}]),
            )],
            vec![retry(
                Outcome::Ran,
                json!([
                {"step": "upload", "class": "x", "until": "2026-11-26T12:10:00Z"},
                {"step": "expired", "class": "x", "until": "2026-11-26T11:00:00Z"},
                {"step": "no time", "class": "x"}]),
            )],
            vec![
                ActionReport::new(Action::Ingest, Outcome::Ran, ""),
                ActionReport::new(Action::Retry, Outcome::Skipped, ""),
            ],
        ];
        let hour = Duration::from_secs(3600);
        let open = open_from_log(&runs, now, hour);
        assert_eq!(
            open.iter().map(|b| b.step.as_str()).collect::<Vec<_>>(),
            ["upload"]
        );
        // A retry that ran and kept no breakers closes the older ones.
        let closed = [
            runs[0].clone(),
            vec![ActionReport::new(Action::Retry, Outcome::NothingToDo, "")],
        ];
        assert!(open_from_log(&closed, now, hour).is_empty());
    }

    #[test]
    fn a_breaker_never_pauses_longer_than_its_cooldown_from_now() {
        let now = parse_time("2026-11-26T12:00:00Z").unwrap();
        let mut report = ActionReport::new(Action::Retry, Outcome::Ran, "");
        report.details.insert(
            detail::BREAKERS.into(),
            json!([{"step": "upload", "class": "x", "until": "2099-01-01T00:00:00Z"},
                   {"step": "soon", "class": "x", "until": "2026-11-26T12:05:00Z"}]),
        );
        let open = open_from_log(&[vec![report]], now, Duration::from_secs(900));
        let until: Vec<SystemTime> = open.iter().map(|b| b.until).collect();
        assert_eq!(
            until,
            [
                now + Duration::from_secs(900),
                now + Duration::from_secs(300)
            ]
        );
    }

    #[test]
    fn a_breaker_is_kept_in_the_shape_it_is_read() {
        let breaker = OpenBreaker {
            step: "upload".into(),
            class: "exit 1: quota".into(),
            until: parse_time("2026-11-26T12:10:00Z").unwrap(),
        };
        assert_eq!(
            breaker.to_json(),
            json!({"step": "upload", "class": "exit 1: quota", "until": "2026-11-26T12:10:00.000Z"})
        );
        assert_eq!(OpenBreaker::from_json(&breaker.to_json()), Some(breaker));
    }

    #[test]
    fn error_classes_ignore_numbers() {
        let report = |line: &str| CommandReport {
            argv: vec![],
            exit_code: Some(1),
            signal: None,
            timed_out: false,
            interrupted: false,
            duration_ms: 0,
            stdout_tail: vec![],
            stderr_tail: vec![line.to_owned()],
        };
        assert_eq!(
            error_class(&report("HTTP 503 after 31s")),
            error_class(&report("HTTP 502 after 9s"))
        );
        assert_eq!(error_class(&report("quota")), "exit 1: quota");
    }
}
