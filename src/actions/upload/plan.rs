//! The upload plan, pure given a [`Disk`]: which source files to queue, which entries to
//! upload now, which to mark skipped (their file is gone), which to refuse (issue 10) and
//! which to leave (waiting for their backoff, or given up).

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::disk::Disk;
use super::entry::{DueUpload, resolve, shown};
use super::removal::{self, DueRemoval};
use crate::config::rules::UploadConfig;
use crate::model::clock::Clock;
use crate::model::upload_status::UploadStatus;
use crate::model::words;
use crate::state::timestamp;
use crate::state::upload_log::UploadLog;

#[derive(Debug, Default)]
pub(crate) struct UploadPlan {
    /// Uploaded entries whose file is gone, for the `remove` command.
    pub remove: Vec<DueRemoval>,
    /// Why the removals were held back, and how many (more than `max_remove` allows at
    /// once): the run fails, saying how to confirm them.
    pub removals_held: Option<(usize, String)>,
    /// Source files to queue as pending: (entry path, why).
    pub enqueue: Vec<(String, &'static str)>,
    pub due: Vec<DueUpload>,
    /// Outstanding entries whose file is gone: marked skipped, not retried.
    pub missing: Vec<String>,
    /// Entries already skipped whose file is still gone.
    pub still_missing: usize,
    /// Failed entries out of attempts: (entry, attempts).
    pub given_up: Vec<(String, u64)>,
    /// Entries memsched will not upload, with the reason: marked `refused`.
    pub refused: Vec<(String, String)>,
    pub waiting: usize,
    pub next_due: Option<SystemTime>,
    pub uploaded: usize,
    /// Paths named by more than one entry, one sentence each: reported, neither
    /// queued nor uploaded nor marked (see `UploadLog::duplicate_paths`).
    pub malformed: Vec<String>,
    /// The earliest place in the upload `set` of a file that waits for its backoff or was
    /// given up: the set's later files wait with it.
    pub set_blocked_from: Option<usize>,
}

impl UploadPlan {
    #[must_use]
    pub(crate) fn has_work(&self) -> bool {
        !self.due.is_empty()
            || !self.remove.is_empty()
            || !self.missing.is_empty()
            || !self.enqueue.is_empty()
            || !self.refused.is_empty()
    }

    #[must_use]
    pub(crate) fn reasons(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .malformed
            .iter()
            .map(|m| format!("malformed: {m}"))
            .collect();
        out.extend(
            self.enqueue
                .iter()
                .map(|(p, why)| format!("queue {p}: {why}")),
        );
        out.extend(
            self.due
                .iter()
                .map(|d| format!("upload {} -> {}", d.entry, d.remote)),
        );
        out.extend(
            self.remove
                .iter()
                .map(|r| format!("remove {} from {}: the file is gone", r.entry, r.remote)),
        );
        if let Some((n, why)) = &self.removals_held {
            out.push(format!(
                "hold {}: {why}",
                words::count(*n, "removal", "removals")
            ));
        }
        out.extend(self.missing.iter().map(|p| {
            format!("skip {p}: the file is gone; it is not retried unless it comes back")
        }));
        out.extend(
            self.refused
                .iter()
                .map(|(p, why)| format!("refuse {}: {why}", shown(p))),
        );
        out.extend(self.given_up.iter().map(|(p, n)| {
            let n = usize::try_from(*n).unwrap_or(usize::MAX);
            format!(
                "leave {p}: failed {}, given up",
                words::count(n, "attempt", "attempts")
            )
        }));
        if let Some(next) = self.next_due {
            out.push(format!(
                "{} for their backoff; the next is due at {}",
                words::count(self.waiting, "upload waits", "uploads wait"),
                timestamp(next)
            ));
        }
        out
    }
}

/// Why an entry's path may not be uploaded, if it may not (issue 10): it must name a
/// regular file that resolves, after following every link, inside the pipeline home or one
/// of the folders the rules allow, and hold no NUL. `Ok` carries the canonical path and the
/// folder it lies in.
fn confine(
    home: &Path,
    disk: &impl Disk,
    entry: &str,
) -> std::result::Result<(PathBuf, PathBuf), String> {
    let Some(abs) = resolve(home, entry) else {
        return Err("the path is neither a file name nor a file key memsched wrote".to_owned());
    };
    let bytes = abs.as_os_str().as_bytes();
    if bytes.contains(&0) {
        return Err("the path contains a NUL byte".to_owned());
    }
    if abs == home || entry.is_empty() {
        return Err("the path is empty: it names no file".to_owned());
    }
    disk.locate(&abs)
}

/// Builds the upload plan from the log, the source files and the entries' files, against
/// the one instant `clock` tells: queue new and changed sources, upload what is due, mark
/// what is gone skipped, refuse what may not go, leave what waits or gave up.
#[must_use]
pub(crate) fn plan(
    home: &Path,
    disk: &impl Disk,
    config: &UploadConfig,
    log: &UploadLog,
    clock: &dyn Clock,
    confirm_removals: bool,
) -> UploadPlan {
    let now = clock.now();
    let mut plan = UploadPlan {
        malformed: log.malformed(),
        ..UploadPlan::default()
    };
    let duplicates = log.duplicate_paths();
    let mut gone = Vec::new();
    for (entry, stat) in disk.sources() {
        if duplicates.contains(entry.as_str()) {
            continue;
        }
        match log.get(&entry) {
            None => plan.enqueue.push((entry, "new file matching sources")),
            Some(e) if e.status() == UploadStatus::Uploaded && e.changed_since_upload(&stat) => {
                plan.enqueue.push((entry, "changed since its upload"));
            }
            Some(e) if e.status() == UploadStatus::Removed => {
                plan.enqueue
                    .push((entry, "back after its removal from the remote"));
            }
            Some(_) => {}
        }
    }
    for (entry, _) in &plan.enqueue {
        match due(home, disk, config, entry, None) {
            Ok(item) => plan.due.push(item),
            Err(why) => plan.refused.push((entry.clone(), why)),
        }
    }
    for e in log.entries() {
        let Some(entry) = e.path().filter(|p| !duplicates.contains(p)) else {
            continue;
        };
        let status = e.status();
        if status == UploadStatus::Uploaded {
            plan.uploaded += 1;
            if config.remove.is_some() && is_gone(home, disk, entry) {
                gone.push((entry, e.remote()));
            }
            continue;
        }
        if !status.is_outstanding() || plan.enqueue.iter().any(|(p, _)| p == entry) {
            continue;
        }
        // Following links: a dangling link is a missing file. An entry that does not
        // decode or holds a NUL is not missing: confine refuses it below.
        if is_gone(home, disk, entry) {
            if status == UploadStatus::Skipped {
                plan.still_missing += 1;
            } else {
                plan.missing.push(entry.to_owned());
            }
            continue;
        }
        let rank = super::set::rank(config, entry);
        if status == UploadStatus::Failed && e.attempts() >= u64::from(config.max_attempts) {
            plan.given_up.push((entry.to_owned(), e.attempts()));
            plan.set_blocked_from = plan.set_blocked_from.into_iter().chain(rank).min();
            continue;
        }
        match e.next_attempt_at().filter(|at| *at > now) {
            Some(at) => {
                plan.set_blocked_from = plan.set_blocked_from.into_iter().chain(rank).min();
                plan.waiting += 1;
                plan.next_due = Some(plan.next_due.map_or(at, |n| n.min(at)));
            }
            None => match due(home, disk, config, entry, e.remote()) {
                Ok(item) => plan.due.push(item),
                Err(why) => plan.refused.push((entry.to_owned(), why)),
            },
        }
    }
    let found = removal::removals(home, config, &gone, plan.uploaded, confirm_removals);
    plan.remove = found.remove;
    plan.refused.extend(found.refused);
    plan.removals_held = found.held;
    super::set::order(config, &mut plan.due);
    plan
}

/// Whether an entry's file is gone (following links); an entry that does not decode or
/// holds a NUL is not.
fn is_gone(home: &Path, disk: &impl Disk, entry: &str) -> bool {
    match resolve(home, entry) {
        Some(abs) if !abs.as_os_str().as_bytes().contains(&0) => disk.is_missing(&abs),
        _ => false,
    }
}

/// The upload of `entry`, or why it is refused.
fn due(
    home: &Path,
    disk: &impl Disk,
    config: &UploadConfig,
    entry: &str,
    remote: Option<&str>,
) -> std::result::Result<DueUpload, String> {
    let (canonical, root) = confine(home, disk, entry)?;
    let abs = resolve(home, entry).expect("confine resolved it");
    // Relative to the folder it was found in (the home, or an allowed folder), from the
    // resolved path, so `Data/../Data/x` cannot smuggle a `..` into `{relpath}`.
    let relpath = canonical
        .strip_prefix(&root)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let remote = remote.map_or_else(
        || {
            config
                .remote
                .replace("{relpath}", &relpath.to_string_lossy())
        },
        str::to_owned,
    );
    super::remote::check(&remote, &config.remote_root)?;
    Ok(DueUpload {
        entry: entry.to_owned(),
        abs,
        path: canonical,
        relpath,
        remote,
    })
}

#[cfg(test)]
mod tests {
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
}
