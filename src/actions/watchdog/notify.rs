//! Desktop notifications when the pipeline's health gets worse (ok to degraded or failing,
//! degraded to failing) or a task dies: what to say is decided here, purely, from the last
//! and the new health; it is sent over the session bus (org.freedesktop.Notifications)
//! through glib's `gdbus`, else libnotify's `notify-send`, at most once per
//! [`defaults::NOTIFY_GAP`]. No D-Bus crate: notify-rust's zbus stack would add some forty
//! crates to every build for one method call.

use std::ffi::OsString;
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use super::health::{Health, Status};
use crate::config::rules::defaults;
use crate::model::words;
use crate::run::runner::{self, Invocation};
use crate::state::{parse_time, timestamp};

/// How long a notifier may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// One notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Notice {
    pub summary: String,
    pub body: String,
    /// "critical" for failing, else "normal".
    pub urgency: &'static str,
}

/// What the last watchdog run left in watchdog_state.json.
#[derive(Debug, Clone, Default)]
pub(crate) struct Before {
    pub status: Option<Status>,
    pub dead_tasks: Vec<String>,
    pub notified_at: Option<SystemTime>,
}

impl Before {
    /// Reads it from the previous watchdog_state.json (`None`: there was none).
    #[must_use]
    pub(crate) fn from_state(state: Option<&Value>) -> Before {
        let Some(state) = state else {
            return Before::default();
        };
        let status = match state["status"].as_str() {
            Some("ok") => Some(Status::Ok),
            Some("degraded") => Some(Status::Degraded),
            Some("failing") => Some(Status::Failing),
            _ => None,
        };
        Before {
            status,
            dead_tasks: state["dead_tasks"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            notified_at: state
                .pointer("/notifications/last_at")
                .and_then(Value::as_str)
                .and_then(parse_time),
        }
    }
}

/// What to tell the user, if anything: health got worse, or tasks died since the last
/// watchdog run; nothing within `gap` of the last notification.
#[must_use]
pub(crate) fn decide(
    before: &Before,
    now_health: &Health,
    now: SystemTime,
    gap: Duration,
) -> Option<Notice> {
    if before
        .notified_at
        .is_some_and(|at| now.duration_since(at).is_ok_and(|d| d < gap))
    {
        return None;
    }
    let worse = before.status.unwrap_or(Status::Ok) < now_health.status;
    let died: Vec<&String> = now_health
        .dead_tasks
        .iter()
        .filter(|id| !before.dead_tasks.contains(id))
        .collect();
    if !worse && died.is_empty() {
        return None;
    }
    let urgency = if now_health.status == Status::Failing {
        "critical"
    } else {
        "normal"
    };
    let summary = if worse {
        format!("memsched: the pipeline is {}", now_health.status.name())
    } else {
        format!(
            "memsched: {} died",
            words::count(died.len(), "task", "tasks")
        )
    };
    let mut body = match now_health.problems.first() {
        Some(first) if now_health.problems.len() > 1 => {
            format!("{first} (+{} more)", now_health.problems.len() - 1)
        }
        Some(first) => first.clone(),
        None => String::new(),
    };
    body.push_str("\nSee `memsched status`.");
    Some(Notice {
        summary,
        body,
        urgency,
    })
}

/// The `notifications` block kept in watchdog_state.json after sending `notice`.
#[must_use]
pub(crate) fn record(notice: &Notice, at: SystemTime) -> Value {
    json!({"notifications": {"last_at": timestamp(at), "last_summary": notice.summary}})
}

/// A string in GVariant's text form, which `gdbus call` parses each argument as (a bare
/// `42` would become a number).
fn gvariant_string(text: &str) -> String {
    let mut out = String::from('"');
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            _ => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Sends `notice` on the session bus; `Err` says why it was not shown.
pub(crate) fn send(notice: &Notice, home: &Path) -> Result<(), String> {
    if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_none() {
        return Err("no session bus (DBUS_SESSION_BUS_ADDRESS is unset)".to_owned());
    }
    let urgency = if notice.urgency == "critical" { 2 } else { 1 };
    let gdbus = [
        "gdbus".to_owned(),
        "call".to_owned(),
        "--session".to_owned(),
        "--dest".to_owned(),
        "org.freedesktop.Notifications".to_owned(),
        "--object-path".to_owned(),
        "/org/freedesktop/Notifications".to_owned(),
        "--method".to_owned(),
        "org.freedesktop.Notifications.Notify".to_owned(),
        "--".to_owned(),
        gvariant_string("memsched"),
        "uint32 0".to_owned(),
        gvariant_string("dialog-warning"),
        gvariant_string(&notice.summary),
        gvariant_string(&notice.body),
        "@as []".to_owned(),
        format!("@a{{sv}} {{\"urgency\": <byte {urgency}>}}"),
        "int32 -1".to_owned(),
    ];
    let notify_send = [
        "notify-send".to_owned(),
        "--app-name=memsched".to_owned(),
        format!("--urgency={}", notice.urgency),
        "--".to_owned(),
        notice.summary.clone(),
        notice.body.clone(),
    ];
    let mut why = Vec::new();
    for argv in [&gdbus[..], &notify_send[..]] {
        let invocation = Invocation {
            argv: argv.iter().map(OsString::from).collect(),
            cwd: home.to_path_buf(),
            env: Vec::new(),
            stdin: None,
            timeout: SEND_TIMEOUT,
            lock: None,
            step_lock: None,
            scripts: Vec::new(),
            item: Some("a desktop notification".to_owned()),
        };
        match runner::run(&invocation) {
            Ok(r) if r.success() => return Ok(()),
            Ok(r) => why.push(format!("{}: {}", argv[0], r.failure_text())),
            Err(e) => why.push(e.chain()),
        }
    }
    Err(why.join("; "))
}

/// The gap between notifications.
#[must_use]
pub(crate) fn gap() -> Duration {
    defaults::NOTIFY_GAP
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::watchdog::health::HEALTH_VERSION;

    fn health(status: Status, dead: &[&str], problems: &[&str]) -> Health {
        Health {
            version: HEALTH_VERSION,
            status,
            checked_at: String::new(),
            problems: problems.iter().map(|p| (*p).to_owned()).collect(),
            tasks: std::collections::BTreeMap::new(),
            stuck_tasks: Vec::new(),
            dead_tasks: dead.iter().map(|d| (*d).to_owned()).collect(),
            failed_tasks: Vec::new(),
            uploads: super::super::health::UploadHealth::default(),
            uploads_configured: false,
            retry_configured: false,
            unindexed_files: None,
            data_files: None,
            pending_removals: None,
            last_runs: std::collections::BTreeMap::new(),
            breakers: Vec::new(),
            unreadable_files: Vec::new(),
            locks: std::collections::BTreeMap::new(),
            leftover_locks: std::collections::BTreeMap::new(),
            watcher: None,
            watcher_process: None,
            now: SystemTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn worse_health_and_new_dead_tasks_are_told_once_per_gap() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let gap = Duration::from_secs(600);
        let ok = Before {
            status: Some(Status::Ok),
            ..Before::default()
        };
        let degraded = health(
            Status::Degraded,
            &[],
            &["1 failed task waits for a retry", "x"],
        );
        let n = decide(&ok, &degraded, now, gap).unwrap();
        assert_eq!(n.summary, "memsched: the pipeline is degraded");
        assert_eq!(
            n.body,
            "1 failed task waits for a retry (+1 more)\nSee `memsched status`."
        );
        assert_eq!(n.urgency, "normal");
        // Same status again: nothing. Better: nothing.
        let was_degraded = Before {
            status: Some(Status::Degraded),
            ..Before::default()
        };
        assert_eq!(decide(&was_degraded, &degraded, now, gap), None);
        assert_eq!(
            decide(&was_degraded, &health(Status::Ok, &[], &[]), now, gap),
            None
        );
        // A task dies while failing already: told, critical.
        let failing = Before {
            status: Some(Status::Failing),
            dead_tasks: vec!["t1".to_owned()],
            ..Before::default()
        };
        let n = decide(
            &failing,
            &health(Status::Failing, &["t1", "t2"], &["d"]),
            now,
            gap,
        )
        .unwrap();
        assert_eq!(n.summary, "memsched: 1 task died");
        assert_eq!(n.urgency, "critical");
        // Within the gap of the last one: nothing.
        let recent = Before {
            notified_at: Some(now - Duration::from_secs(60)),
            ..ok
        };
        assert_eq!(decide(&recent, &degraded, now, gap), None);
    }

    #[test]
    fn strings_reach_gdbus_as_strings() {
        assert_eq!(gvariant_string("42"), "\"42\"");
        assert_eq!(gvariant_string("a \"b\"\\\nc"), "\"a \\\"b\\\"\\\\\\nc\"");
    }
}
