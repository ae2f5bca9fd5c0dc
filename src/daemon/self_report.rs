//! The watcher's self-report: what it says about itself in watchdog_state.json under
//! "watcher" (which watcher hears data_dir, how its last canary went, a rules file it could
//! not load, how often it lost events), so the watchdog and `status` can tell a deaf or
//! stuck watcher from a healthy one. The keys are a format other programs read.

use std::path::Path;
use std::time::SystemTime;

use serde::Serialize;
use serde_json::Value;

use crate::error::Result;
use crate::model::watcher_kind::WatcherKind;
use crate::state::{timestamp, watchdog_state};

/// How the last canary went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum CanaryStatus {
    /// It came back: the watcher hears data_dir.
    Ok,
    /// It never came back: the watcher was rebuilt or replaced by polling.
    Missed,
}

/// The last canary's outcome and when it was known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(super) struct CanaryMark {
    status: CanaryStatus,
    at: String,
}

impl CanaryMark {
    #[must_use]
    pub(super) fn new(status: CanaryStatus, at: SystemTime) -> CanaryMark {
        CanaryMark {
            status,
            at: timestamp(at),
        }
    }
}

/// What the loop has learnt about its own health since it started.
#[derive(Debug, Clone, Default)]
pub(super) struct SelfReport {
    pub(super) canary: Option<CanaryMark>,
    /// When the watcher started.
    pub(super) started_at: Option<String>,
    /// Since when runs wait for the pause marker to go; `None` when not paused.
    pub(super) paused_since: Option<String>,
    /// Why the last edit of the rules file was refused (the last good rules stay in force).
    pub(super) rules_error: Option<String>,
    /// Full reconciles forced by lost events, since startup.
    pub(super) rescans: u64,
    /// Items the last tick found that no event had announced.
    pub(super) unannounced: Option<u64>,
}

/// The "watcher" object as written; field order is the order of the keys in the file.
#[derive(Serialize)]
struct Written<'a> {
    pid: u32,
    started_at: Option<&'a str>,
    kind: WatcherKind,
    canary: Option<&'a CanaryMark>,
    paused_since: Option<&'a str>,
    rules_error: Option<&'a str>,
    rescans: u64,
    unannounced_last_tick: Option<u64>,
    updated_at: String,
}

#[derive(Serialize)]
struct Document<'a> {
    watcher: Written<'a>,
}

impl SelfReport {
    /// The fields this report replaces in watchdog_state.json. Pure: the watcher's kind,
    /// pid and the time come in.
    fn to_json(&self, kind: WatcherKind, pid: u32, now: SystemTime) -> Value {
        let doc = Document {
            watcher: Written {
                pid,
                started_at: self.started_at.as_deref(),
                kind,
                canary: self.canary.as_ref(),
                paused_since: self.paused_since.as_deref(),
                rules_error: self.rules_error.as_deref(),
                rescans: self.rescans,
                unannounced_last_tick: self.unannounced,
                updated_at: timestamp(now),
            },
        };
        serde_json::to_value(doc).expect("strings, numbers and unit enums always serialize")
    }

    /// Records the report in `watchdog_state`, keeping the fields others wrote there.
    pub(super) fn write(&self, watchdog_state: &Path, kind: WatcherKind) -> Result<()> {
        let value = self.to_json(kind, std::process::id(), SystemTime::now());
        watchdog_state::write(watchdog_state, value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn the_report_keeps_its_keys_and_their_order() {
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let fresh = SelfReport::default().to_json(WatcherKind::Inotify, 7, at);
        assert_eq!(
            serde_json::to_string(&fresh).unwrap(),
            r#"{"watcher":{"pid":7,"started_at":null,"kind":"inotify","canary":null,"paused_since":null,"rules_error":null,"rescans":0,"unannounced_last_tick":null,"updated_at":"2023-11-14T22:13:20.000Z"}}"#
        );
        let seasoned = SelfReport {
            canary: Some(CanaryMark::new(CanaryStatus::Missed, at)),
            started_at: Some("s".to_owned()),
            paused_since: Some("p".to_owned()),
            rules_error: Some("bad".to_owned()),
            rescans: 2,
            unannounced: Some(3),
        }
        .to_json(WatcherKind::Poll, 7, at);
        assert_eq!(
            serde_json::to_string(&seasoned).unwrap(),
            r#"{"watcher":{"pid":7,"started_at":"s","kind":"poll","canary":{"status":"missed","at":"2023-11-14T22:13:20.000Z"},"paused_since":"p","rules_error":"bad","rescans":2,"unannounced_last_tick":3,"updated_at":"2023-11-14T22:13:20.000Z"}}"#
        );
        let ok = CanaryMark::new(CanaryStatus::Ok, at);
        assert_eq!(serde_json::to_value(ok).unwrap()["status"], "ok");
    }
}
