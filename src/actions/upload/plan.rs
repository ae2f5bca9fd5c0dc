//! The upload plan, pure given a [`Disk`]: which source files to queue, which entries to
//! upload now, which to mark skipped (their file is gone), which to refuse (issue 10) and
//! which to leave (waiting for their backoff, or given up).

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::actions::walk;
use crate::config::rules::UploadConfig;
use crate::model::clock::Clock;
use crate::model::file_key;
use crate::model::upload_status::UploadStatus;
use crate::model::words;
use crate::state::stat::Stat;
use crate::state::timestamp;
use crate::state::upload_log::UploadLog;

/// An entry to upload now.
#[derive(Debug, Clone)]
pub struct DueUpload {
    /// The entry's `path`, as written in the log.
    pub entry: String,
    pub abs: PathBuf,
    pub relpath: PathBuf,
    pub remote: String,
}

#[derive(Debug, Default)]
pub struct UploadPlan {
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
}

impl UploadPlan {
    #[must_use]
    pub fn has_work(&self) -> bool {
        !self.due.is_empty()
            || !self.missing.is_empty()
            || !self.enqueue.is_empty()
            || !self.refused.is_empty()
    }

    #[must_use]
    pub fn reasons(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .enqueue
            .iter()
            .map(|(p, why)| format!("queue {p}: {why}"))
            .collect();
        out.extend(
            self.due
                .iter()
                .map(|d| format!("upload {} -> {}", d.entry, d.remote)),
        );
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

/// Where an entry's file is: absolute, a file key, or relative to the pipeline home.
/// `None` for a key that does not decode (an odd NUL-plus-hex form).
pub(super) fn resolve(home: &Path, entry: &str) -> Option<PathBuf> {
    let path = file_key::path(entry)?;
    Some(if path.is_absolute() {
        path
    } else {
        home.join(path)
    })
}

/// An entry's path for messages: NULs and other bytes a terminal would act on shown
/// escaped, since the text comes from a file anyone with access to the log wrote.
pub(super) fn shown(entry: &str) -> String {
    entry.escape_debug().to_string()
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

/// Why a remote may not be used, if it may not: one starting with `-` would be read as an
/// option by the upload command (`--config=evil.conf`), and a `..` component climbs out of
/// the remote folder.
fn check_remote(remote: &str) -> std::result::Result<(), String> {
    if remote.starts_with('-') {
        return Err(format!(
            "the remote {} starts with '-', which the upload command would take for an option",
            shown(remote)
        ));
    }
    if remote.contains('\0') {
        return Err("the remote contains a NUL byte".to_owned());
    }
    if remote.split(['/', ':', '\\']).any(|part| part == "..") {
        return Err(format!(
            "the remote {} has a '..' component, which climbs out of its folder",
            shown(remote)
        ));
    }
    Ok(())
}

/// The folders uploads may come from: the pipeline home first, then the rules' `allow`
/// list (relative entries against the home), each with its links resolved. A folder that
/// does not exist allows nothing.
fn allowed_roots(home: &Path, config: &UploadConfig) -> Vec<PathBuf> {
    std::iter::once(home.to_path_buf())
        .chain(config.allow.iter().map(|a| home.join(a)))
        .filter_map(|root| std::fs::canonicalize(root).ok())
        .collect()
}

/// What the upload plan asks of the file system, behind a trait so the plan is a pure
/// function of the log, the rules and a file system a test can make up.
pub trait Disk {
    /// The source files the `sources` globs match: (entry key, stat).
    fn sources(&self) -> Vec<(String, Stat)>;
    /// Whether `abs` names nothing (following links: a dangling link is missing).
    fn is_missing(&self, abs: &Path) -> bool;
    /// Where `abs` resolves, following every link, and the allowed folder it lies in; or
    /// why it may not be uploaded (outside every allowed folder, not a regular file).
    fn locate(&self, abs: &Path) -> std::result::Result<(PathBuf, PathBuf), String>;
}

/// The real file system under the pipeline home.
pub struct RealDisk<'a> {
    home: &'a Path,
    config: &'a UploadConfig,
    /// The folders uploads may come from (see [`allowed_roots`]).
    allowed: Vec<PathBuf>,
}

impl<'a> RealDisk<'a> {
    #[must_use]
    pub fn new(home: &'a Path, config: &'a UploadConfig) -> RealDisk<'a> {
        RealDisk {
            home,
            config,
            allowed: allowed_roots(home, config),
        }
    }
}

impl Disk for RealDisk<'_> {
    fn sources(&self) -> Vec<(String, Stat)> {
        let config = self.config;
        if config.sources.is_empty() {
            return Vec::new();
        }
        let folders = crate::config::sources::folders(&config.sources);
        let found = walk::files(
            self.home,
            &|rel| crate::config::sources::must_enter(&folders, rel),
            &|rel| config.source_set.is_match(rel),
        );
        found
            .files
            .into_iter()
            .map(|file| (file_key::key(&file.rel), Stat::of(&file.meta)))
            .collect()
    }

    fn is_missing(&self, abs: &Path) -> bool {
        std::fs::metadata(abs).is_err()
    }

    fn locate(&self, abs: &Path) -> std::result::Result<(PathBuf, PathBuf), String> {
        let canonical = std::fs::canonicalize(abs)
            .map_err(|e| format!("cannot resolve {}: {e}", abs.display()))?;
        let Some(root) = self.allowed.iter().find(|root| canonical.starts_with(root)) else {
            return Err(format!(
                "{} lies outside the pipeline home {} and the folders [actions.upload] allow lists",
                canonical.display(),
                self.allowed
                    .first()
                    .map_or(self.home, PathBuf::as_path)
                    .display()
            ));
        };
        match std::fs::metadata(&canonical) {
            Ok(meta) if meta.is_file() => Ok((canonical.clone(), root.clone())),
            Ok(_) => Err(format!("{} is not a regular file", canonical.display())),
            Err(e) => Err(format!("cannot read {}: {e}", canonical.display())),
        }
    }
}

/// Builds the upload plan from the log, the source files and the entries' files, against
/// the one instant `clock` tells: queue new and changed sources, upload what is due, mark
/// what is gone skipped, refuse what may not go, leave what waits or gave up.
#[must_use]
pub fn plan(
    home: &Path,
    disk: &impl Disk,
    config: &UploadConfig,
    log: &UploadLog,
    clock: &dyn Clock,
) -> UploadPlan {
    let now = clock.now();
    let mut plan = UploadPlan::default();
    for (entry, stat) in disk.sources() {
        match log.get(&entry) {
            None => plan.enqueue.push((entry, "new file matching sources")),
            Some(e) if e.status() == UploadStatus::Uploaded && e.changed_since_upload(&stat) => {
                plan.enqueue.push((entry, "changed since its upload"));
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
        let Some(entry) = e.path() else { continue };
        let status = e.status();
        if status == UploadStatus::Uploaded {
            plan.uploaded += 1;
            continue;
        }
        if !status.is_outstanding() || plan.enqueue.iter().any(|(p, _)| p == entry) {
            continue;
        }
        // Following links: a dangling link is a missing file. An entry that does not
        // decode or holds a NUL is not missing: confine refuses it below.
        let missing = match resolve(home, entry) {
            Some(abs) if !abs.as_os_str().as_bytes().contains(&0) => disk.is_missing(&abs),
            _ => false,
        };
        if missing {
            if status == UploadStatus::Skipped {
                plan.still_missing += 1;
            } else {
                plan.missing.push(entry.to_owned());
            }
            continue;
        }
        if status == UploadStatus::Failed && e.attempts() >= u64::from(config.max_attempts) {
            plan.given_up.push((entry.to_owned(), e.attempts()));
            continue;
        }
        match e.next_attempt_at().filter(|at| *at > now) {
            Some(at) => {
                plan.waiting += 1;
                plan.next_due = Some(plan.next_due.map_or(at, |n| n.min(at)));
            }
            None => match due(home, disk, config, entry, e.remote()) {
                Ok(item) => plan.due.push(item),
                Err(why) => plan.refused.push((entry.to_owned(), why)),
            },
        }
    }
    plan
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
    check_remote(&remote)?;
    Ok(DueUpload {
        entry: entry.to_owned(),
        abs,
        relpath,
        remote,
    })
}
