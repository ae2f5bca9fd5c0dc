//! watchdog_state.json: the health summary the watchdog writes, and under "watcher" the
//! watcher's own report ([`WatcherReport`]), written by the daemon and read back by health
//! and `status` as that same type. Top-level fields memsched does not write (a note from
//! the user's own watchdog, say) are kept.

use std::path::Path;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{json_file, timestamp};
use crate::error::{Error, Result};
use crate::model::watcher_kind::WatcherKind;

/// The key of the watcher's report in the document.
const WATCHER: &str = "watcher";

/// Replaces the known fields of watchdog_state.json with `health` (an object). A file that
/// does not parse is left untouched and the error returned.
pub(crate) fn write(path: &Path, health: Value) -> Result<()> {
    let mut root = match json_file::read(path)? {
        None => serde_json::Map::new(),
        Some(Value::Object(map)) => map,
        Some(_) => {
            return Err(Error::StateShape {
                path: path.to_path_buf(),
                msg: "expected an object".to_owned(),
            });
        }
    };
    if let Value::Object(fields) = health {
        root.extend(fields);
    }
    json_file::write(path, &Value::Object(root))
}

/// How the last canary went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum CanaryStatus {
    /// It came back: the watcher hears data_dir.
    Ok,
    /// It never came back: the watcher was rebuilt or replaced by polling.
    Missed,
}

/// The last canary's outcome and when it was known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CanaryMark {
    pub status: CanaryStatus,
    pub at: String,
}

impl CanaryMark {
    #[must_use]
    pub(crate) fn new(status: CanaryStatus, at: SystemTime) -> CanaryMark {
        CanaryMark {
            status,
            at: timestamp(at),
        }
    }
}

/// What the watcher says about itself under "watcher": which watcher hears data_dir, how
/// its last canary went, a rules file it could not load, how often it lost events. The
/// keys are a format other programs read; field order is key order in the file. Only
/// `pid` is needed to read one: reports written by hand or by earlier versions lack some
/// of the rest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WatcherReport {
    pub pid: u32,
    /// When the watcher started.
    pub started_at: Option<String>,
    /// How it hears of changes; always written.
    pub kind: Option<WatcherKind>,
    /// Why it polls though inotify was asked for (the inotify watch limit, say).
    pub fell_back: Option<String>,
    pub canary: Option<CanaryMark>,
    /// Since when runs wait for the pause marker to go; `None` when not paused.
    pub paused_since: Option<String>,
    /// Why the last edit of the rules file was refused (the last good rules stay in force).
    pub rules_error: Option<String>,
    /// Full reconciles forced by lost events, since startup.
    #[serde(default)]
    pub rescans: u64,
    /// Items the last tick found that no event had announced.
    pub unannounced_last_tick: Option<u64>,
    /// When the report was written; always written.
    pub updated_at: Option<String>,
}

/// The fields `report` replaces in watchdog_state.json (for [`write()`]).
#[must_use]
pub(crate) fn watcher_fields(report: &WatcherReport) -> Value {
    let report =
        serde_json::to_value(report).expect("strings, numbers and unit enums always serialize");
    Value::Object([(WATCHER.to_owned(), report)].into_iter().collect())
}

/// The watcher's last report: `None` when there is no file, no report in it, or one that
/// does not read as a report (no pid, a hand edit), which tells nothing about a watcher.
/// A file that does not parse is an error.
pub(crate) fn read_watcher(path: &Path) -> Result<Option<WatcherReport>> {
    let Some(root) = json_file::read(path)? else {
        return Ok(None);
    };
    Ok(root
        .get(WATCHER)
        .and_then(|w| WatcherReport::deserialize(w).ok()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::{Duration, UNIX_EPOCH};

    fn full_report() -> WatcherReport {
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        WatcherReport {
            pid: 7,
            started_at: Some("s".to_owned()),
            kind: Some(WatcherKind::Poll),
            fell_back: Some("limit".to_owned()),
            canary: Some(CanaryMark::new(CanaryStatus::Missed, at)),
            paused_since: Some("p".to_owned()),
            rules_error: Some("bad".to_owned()),
            rescans: 2,
            unannounced_last_tick: Some(3),
            updated_at: Some(timestamp(at)),
        }
    }

    /// The golden round trip: the report the daemon writes is the report health reads,
    /// and the other fields of the file stay.
    #[test]
    fn the_watchers_report_reads_back_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("watchdog_state.json");
        assert_eq!(read_watcher(&path).unwrap(), None);
        std::fs::write(&path, r#"{"note": "mine", "status": "ok"}"#).unwrap();
        assert_eq!(read_watcher(&path).unwrap(), None);
        write(&path, watcher_fields(&full_report())).unwrap();
        assert_eq!(read_watcher(&path).unwrap(), Some(full_report()));
        let root = json_file::read(&path).unwrap().unwrap();
        assert_eq!(root["note"], "mine");
    }

    /// A report in today's on-disk shape (as the daemon writes it) reads into the type
    /// and writes back to the same JSON: the format does not change under its readers.
    #[test]
    fn todays_on_disk_report_reads_and_writes_the_same() {
        let on_disk = json!({"watcher": {"pid": 7, "started_at": "s", "kind": "poll", "fell_back": "limit",
            "canary": {"status": "missed", "at": "2023-11-14T22:13:20.000Z"},
            "paused_since": "p", "rules_error": "bad", "rescans": 2,
            "unannounced_last_tick": 3, "updated_at": "2023-11-14T22:13:20.000Z"}});
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("watchdog_state.json");
        std::fs::write(&path, on_disk.to_string()).unwrap();
        let report = read_watcher(&path).unwrap().unwrap();
        assert_eq!(report, full_report());
        assert_eq!(watcher_fields(&report), on_disk);
    }

    /// The first versions wrote no `started_at` or `paused_since`, hand-made reports (the
    /// tests of `status`) only a pid and a kind; without a pid there is no watcher to see.
    #[test]
    fn partial_reports_read_and_one_without_a_pid_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("watchdog_state.json");
        let cases = [
            (
                json!({"pid": 9, "kind": "inotify"}),
                Some((9, Some(WatcherKind::Inotify))),
            ),
            (json!({"pid": 9, "rules_error": "old"}), Some((9, None))),
            (json!({"kind": "inotify"}), None),
            (json!({"pid": -1}), None),
            (json!("gone"), None),
        ];
        for (watcher, expected) in cases {
            std::fs::write(&path, json!({"watcher": watcher}).to_string()).unwrap();
            let read = read_watcher(&path).unwrap().map(|r| (r.pid, r.kind));
            assert_eq!(read, expected, "{watcher}");
        }
        std::fs::write(&path, "{").unwrap();
        assert!(read_watcher(&path).is_err());
    }
}
