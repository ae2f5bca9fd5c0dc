//! The watcher's self-report: what it says about itself in watchdog_state.json under
//! "watcher" (which watcher hears data_dir, how its last canary went, a rules file it could
//! not load, how often it lost events), so the watchdog and `status` can tell a deaf or
//! stuck watcher from a healthy one. The keys are a format other programs read: the
//! report's type, [`WatcherReport`], lives beside the file, where its readers find it.

use std::path::Path;
use std::time::SystemTime;

use serde_json::Value;

use crate::error::Result;
use crate::model::watcher_kind::WatcherKind;
use crate::state::timestamp;
use crate::state::watchdog_state::{self, WatcherReport};
pub(super) use crate::state::watchdog_state::{CanaryMark, CanaryStatus};

/// The watcher's kind, and why it polls when inotify was asked for.
type Kind<'a> = (WatcherKind, Option<&'a str>);

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

impl SelfReport {
    /// The report as watchdog_state.json keeps it (and health reads it back). Pure: the
    /// watcher's kind, pid and the time come in.
    fn to_report(&self, watcher: Kind<'_>, pid: u32, now: SystemTime) -> WatcherReport {
        WatcherReport {
            pid,
            started_at: self.started_at.clone(),
            kind: Some(watcher.0),
            fell_back: watcher.1.map(str::to_owned),
            canary: self.canary.clone(),
            paused_since: self.paused_since.clone(),
            rules_error: self.rules_error.clone(),
            rescans: self.rescans,
            unannounced_last_tick: self.unannounced,
            updated_at: Some(timestamp(now)),
        }
    }

    /// The fields this report replaces in watchdog_state.json.
    fn to_json(&self, watcher: Kind<'_>, pid: u32, now: SystemTime) -> Value {
        watchdog_state::watcher_fields(&self.to_report(watcher, pid, now))
    }

    /// Records the report in `watchdog_state`, keeping the fields others wrote there:
    /// the watcher's `kind`, and why it polls when inotify was asked for.
    pub(super) fn write(
        &self,
        watchdog_state: &Path,
        kind: WatcherKind,
        fell_back: Option<&str>,
    ) -> Result<()> {
        let value = self.to_json((kind, fell_back), std::process::id(), SystemTime::now());
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
        let fresh = SelfReport::default().to_json((WatcherKind::Inotify, None), 7, at);
        assert_eq!(
            serde_json::to_string(&fresh).unwrap(),
            r#"{"watcher":{"pid":7,"started_at":null,"kind":"inotify","fell_back":null,"canary":null,"paused_since":null,"rules_error":null,"rescans":0,"unannounced_last_tick":null,"updated_at":"2023-11-14T22:13:20.000Z"}}"#
        );
        let seasoned = SelfReport {
            canary: Some(CanaryMark::new(CanaryStatus::Missed, at)),
            started_at: Some("s".to_owned()),
            paused_since: Some("p".to_owned()),
            rules_error: Some("bad".to_owned()),
            rescans: 2,
            unannounced: Some(3),
        }
        .to_json((WatcherKind::Poll, Some("limit")), 7, at);
        assert_eq!(
            serde_json::to_string(&seasoned).unwrap(),
            r#"{"watcher":{"pid":7,"started_at":"s","kind":"poll","fell_back":"limit","canary":{"status":"missed","at":"2023-11-14T22:13:20.000Z"},"paused_since":"p","rules_error":"bad","rescans":2,"unannounced_last_tick":3,"updated_at":"2023-11-14T22:13:20.000Z"}}"#
        );
        let ok = CanaryMark::new(CanaryStatus::Ok, at);
        assert_eq!(serde_json::to_value(ok).unwrap()["status"], "ok");
    }
}
