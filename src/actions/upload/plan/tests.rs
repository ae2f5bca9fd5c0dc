//! The upload plan's table tests: each kind of entry, confinement, the clock.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::config::rules::Rules;
use crate::model::clock::Frozen;

const HOME: &str = "/pipeline";
const NOW: &str = "2026-11-26T12:00:00Z";

fn now() -> SystemTime {
    crate::state::parse_time(NOW).unwrap()
}

use crate::state::stat::Stat;

/// A made-up file system: the files that exist, each its own canonical path; the
/// allowed folder is the home.
struct FakeDisk {
    sources: Vec<(String, Stat)>,
    files: HashSet<PathBuf>,
}

impl Disk for FakeDisk {
    fn sources(&self) -> Vec<(String, Stat)> {
        self.sources.clone()
    }
    fn is_missing(&self, abs: &Path) -> bool {
        !self.files.contains(abs)
    }
    fn locate(&self, abs: &Path) -> std::result::Result<(PathBuf, PathBuf), String> {
        if !self.files.contains(abs) {
            return Err(format!("cannot resolve {}", abs.display()));
        }
        let home = PathBuf::from(HOME);
        if abs.starts_with(&home) {
            Ok((abs.to_path_buf(), home))
        } else {
            Err(format!("{} lies outside the pipeline home", abs.display()))
        }
    }
}

fn config() -> UploadConfig {
    let text = "[actions.upload]\ncommand = [\"up\", \"{path}\", \"{remote}\"]\nremote = \"r:{relpath}\"\nmax_attempts = 3\nsources = [\"Data/**\"]\n";
    Rules::parse(Path::new("r.toml"), text)
        .unwrap()
        .upload
        .unwrap()
}

fn log(entries: &[Value]) -> UploadLog {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("upload_log.json");
    std::fs::write(&path, json!({ "uploads": entries }).to_string()).unwrap();
    UploadLog::load(&path).unwrap()
}

fn stat(size: u64) -> Stat {
    Stat {
        size,
        mtime_ns: 5,
        inode: 1,
        ctime_ns: None,
    }
}

/// Where the plan put `entry`.
fn places(plan: &UploadPlan, entry: &str) -> Vec<&'static str> {
    let mut at = Vec::new();
    if plan.enqueue.iter().any(|(p, _)| p == entry) {
        at.push("queue");
    }
    if plan.due.iter().any(|d| d.entry == entry) {
        at.push("upload");
    }
    if plan.missing.iter().any(|p| p == entry) {
        at.push("skip");
    }
    if plan.refused.iter().any(|(p, _)| p == entry) {
        at.push("refuse");
    }
    if plan.given_up.iter().any(|(p, _)| p == entry) {
        at.push("give up");
    }
    at
}

/// One entry's case: (what it is, the size of a source file by its name, its log entry,
/// whether its file exists, where the plan puts it).
type Case = (
    &'static str,
    Option<u64>,
    Option<Value>,
    bool,
    &'static [&'static str],
);

fn cases() -> Vec<Case> {
    let goes = |places: &'static [&'static str]| places;
    let later = "2026-11-26T12:05:00Z";
    let earlier = "2026-11-26T11:00:00Z";
    vec![
        (
            "a new source file",
            Some(1),
            None,
            true,
            goes(&["queue", "upload"]),
        ),
        (
            "a source changed since its upload",
            Some(2),
            Some(json!({"status": "uploaded", "size": 1, "mtime_ns": "5"})),
            true,
            goes(&["queue", "upload"]),
        ),
        (
            "a source unchanged since its upload",
            Some(1),
            Some(json!({"status": "uploaded", "size": 1, "mtime_ns": "5"})),
            true,
            goes(&[]),
        ),
        (
            "a pending entry",
            None,
            Some(json!({"status": "pending"})),
            true,
            goes(&["upload"]),
        ),
        (
            "a pending entry whose file is gone",
            None,
            Some(json!({"status": "pending"})),
            false,
            goes(&["skip"]),
        ),
        (
            "a skipped entry still gone",
            None,
            Some(json!({"status": "skipped"})),
            false,
            goes(&[]),
        ),
        (
            "a skipped entry come back",
            None,
            Some(json!({"status": "skipped"})),
            true,
            goes(&["upload"]),
        ),
        (
            "a failed entry out of attempts",
            None,
            Some(json!({"status": "failed", "attempts": 3})),
            true,
            goes(&["give up"]),
        ),
        (
            "a failed entry in its backoff",
            None,
            Some(json!({"status": "failed", "attempts": 1, "next_attempt_at": later})),
            true,
            goes(&[]),
        ),
        (
            "a failed entry past its backoff",
            None,
            Some(json!({"status": "failed", "attempts": 1, "next_attempt_at": earlier})),
            true,
            goes(&["upload"]),
        ),
        (
            "a remote read as an option",
            None,
            Some(json!({"status": "pending", "remote": "--config=evil.conf"})),
            true,
            goes(&["refuse"]),
        ),
        (
            "a remote climbing out of its folder",
            None,
            Some(json!({"status": "pending", "remote": "r:a/../../b"})),
            true,
            goes(&["refuse"]),
        ),
        (
            "a refused entry",
            None,
            Some(json!({"status": "refused"})),
            true,
            goes(&[]),
        ),
    ]
}

#[test]
fn each_entry_is_queued_uploaded_skipped_refused_or_left() {
    for (case, source, entry, exists, expected) in &cases() {
        let name = "Data/notes/a.txt";
        let mut entries = Vec::new();
        if let Some(mut e) = entry.clone() {
            e["path"] = name.into();
            entries.push(e);
        }
        let disk = FakeDisk {
            sources: source
                .map(|s| (name.to_owned(), stat(s)))
                .into_iter()
                .collect(),
            files: if *exists {
                HashSet::from([Path::new(HOME).join(name)])
            } else {
                HashSet::new()
            },
        };
        let plan = plan(
            Path::new(HOME),
            &disk,
            &config(),
            &log(&entries),
            &Frozen(now()),
            false,
        );
        assert_eq!(places(&plan, name), *expected, "{case}");
    }
}

#[test]
fn a_file_outside_the_home_is_refused_and_the_remote_names_the_relative_path() {
    let entries = [
        json!({"path": "/etc/passwd", "status": "pending"}),
        json!({"path": "Data/notes/a.txt", "status": "pending"}),
    ];
    let disk = FakeDisk {
        sources: Vec::new(),
        files: HashSet::from([
            PathBuf::from("/etc/passwd"),
            Path::new(HOME).join("Data/notes/a.txt"),
        ]),
    };
    let plan = plan(
        Path::new(HOME),
        &disk,
        &config(),
        &log(&entries),
        &Frozen(now()),
        false,
    );
    assert_eq!(places(&plan, "/etc/passwd"), ["refuse"]);
    assert!(plan.refused[0].1.contains("outside"), "{:?}", plan.refused);
    assert_eq!(plan.due.len(), 1);
    assert_eq!(plan.due[0].remote, "r:Data/notes/a.txt");
}

#[test]
fn the_clock_decides_what_is_due_and_when_the_next_is() {
    let entries = [
        json!({"path": "Data/a.txt", "status": "failed", "attempts": 1,
        "next_attempt_at": "2026-11-26T12:05:00Z"}),
    ];
    let disk = FakeDisk {
        sources: Vec::new(),
        files: HashSet::from([Path::new(HOME).join("Data/a.txt")]),
    };
    let log = log(&entries);
    let before = plan(
        Path::new(HOME),
        &disk,
        &config(),
        &log,
        &Frozen(now()),
        false,
    );
    assert_eq!((before.due.len(), before.waiting), (0, 1));
    assert_eq!(before.next_due, Some(now() + Duration::from_secs(300)));
    let after = Frozen(now() + Duration::from_secs(301));
    let after = plan(Path::new(HOME), &disk, &config(), &log, &after, false);
    assert_eq!(
        (after.due.len(), after.waiting, after.next_due),
        (1, 0, None)
    );
}

#[test]
fn min_interval_holds_a_changed_file_and_the_set_files_after_it() {
    let text = "[actions.upload]\ncommand = [\"up\", \"{path}\", \"{remote}\"]\nremote = \"r:{relpath}\"\nset = [\"index/*.faiss\", \"index/*.json\"]\nmin_interval = \"10m\"\n";
    let config = Rules::parse(Path::new("r.toml"), text)
        .unwrap()
        .upload
        .unwrap();
    let (index, sidecar) = ("index/m.faiss", "index/m.json");
    let went_up = |ago_s: u64| crate::state::timestamp(now() - Duration::from_secs(ago_s));
    // The index went up a minute ago and changed since; the side-car went up an hour ago.
    let entries = [
        json!({"path": index, "status": "uploaded", "size": 1, "mtime_ns": "5", "uploaded_at": went_up(60)}),
        json!({"path": sidecar, "status": "uploaded", "size": 1, "mtime_ns": "5", "uploaded_at": went_up(3600)}),
    ];
    let disk = FakeDisk {
        sources: vec![(index.to_owned(), stat(2)), (sidecar.to_owned(), stat(2))],
        files: HashSet::from([Path::new(HOME).join(index), Path::new(HOME).join(sidecar)]),
    };
    let held = plan(
        Path::new(HOME),
        &disk,
        &config,
        &log(&entries),
        &Frozen(now()),
        false,
    );
    assert_eq!(places(&held, index), ["queue"], "queued, not uploaded");
    assert_eq!(
        held.coalesced,
        [(index.to_owned(), now() + Duration::from_secs(540))]
    );
    assert_eq!(held.next_due, Some(now() + Duration::from_secs(540)));
    assert_eq!(
        held.set_blocked_from,
        Some(0),
        "the side-car waits for its index"
    );
    assert_eq!(places(&held, sidecar), ["queue"], "it waits with its set");
    assert_eq!(
        held.set_waits,
        [(sidecar.to_owned(), now() + Duration::from_secs(540))]
    );
    // Ten minutes after its upload, the index goes up too.
    let later = Frozen(now() + Duration::from_secs(541));
    let after = plan(
        Path::new(HOME),
        &disk,
        &config,
        &log(&entries),
        &later,
        false,
    );
    assert_eq!(places(&after, index), ["queue", "upload"]);
    assert!(after.coalesced.is_empty());
}
