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
use crate::state::upload_log::{UploadLog, UploadView};

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
    /// Entries waiting for their backoff.
    pub waiting: usize,
    /// When the first of them is due.
    pub backoff_due: Option<SystemTime>,
    /// Entries uploaded less than `min_interval` ago, queued until it ends: (entry, when).
    pub coalesced: Vec<(String, SystemTime)>,
    /// Files of the `set` that could go, waiting while another of the set waits out
    /// `min_interval` (entry, when the last of those ends): the set goes up whole.
    pub set_waits: Vec<(String, SystemTime)>,
    /// When the next entry that waits (its backoff, or `min_interval`) is due.
    pub next_due: Option<SystemTime>,
    /// Entries whose `uploaded_at` is ahead of the clock: `min_interval` does not hold
    /// them back (entry, that `uploaded_at`).
    pub ahead_of_clock: Vec<(String, SystemTime)>,
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
        out.extend(self.ahead_of_clock.iter().map(|(p, at)| {
            format!(
                "no min_interval for {p}: its uploaded_at ({}) is ahead of the clock (a clock set back, or another program's stamp), which says nothing of when it went up",
                timestamp(*at)
            )
        }));
        out.extend(self.coalesced.iter().map(|(p, at)| {
            format!(
                "wait {p}: it went up less than min_interval ago; its latest version goes up at {}",
                timestamp(*at)
            )
        }));
        out.extend(self.set_waits.iter().map(|(p, at)| {
            format!(
                "wait {p}: another file of its set went up less than min_interval ago, and the set goes up whole, at {} at the latest",
                timestamp(*at)
            )
        }));
        if let Some(next) = self.backoff_due {
            out.push(format!(
                "{} for their backoff; the next is due at {}",
                words::count(self.waiting, "upload waits", "uploads wait"),
                timestamp(next)
            ));
        }
        out
    }

    /// Files that wait for `min_interval`, theirs or their set's.
    #[must_use]
    pub(crate) fn interval_waits(&self) -> usize {
        self.coalesced.len() + self.set_waits.len()
    }

    /// `entry` (of rank `rank` in the set) waits until `at`: the set's later files wait
    /// with it, and the run wakes for it.
    fn wait_until(&mut self, rank: Option<usize>, at: SystemTime) {
        self.set_blocked_from = self.set_blocked_from.into_iter().chain(rank).min();
        self.next_due = self.next_due.into_iter().chain(Some(at)).min();
    }
}

/// When `entry` may go up again, if `min_interval` holds it back at `now`: it went up
/// less than that long ago. Its latest version goes up then.
fn interval_ends(
    config: &UploadConfig,
    entry: Option<UploadView<'_>>,
    now: SystemTime,
) -> Option<SystemTime> {
    let uploaded_at = entry?.uploaded_at()?;
    // Ahead of the clock (a clock set back since, another program's stamp), it says
    // nothing of when the file went up: held until then, it could wait for years. It goes
    // up now, and the stamp that upload writes anchors the interval again.
    if uploaded_at > now {
        return None;
    }
    let at = uploaded_at.checked_add(config.min_interval?)?;
    (at > now).then_some(at)
}

/// The `uploaded_at` of `entry` when it is ahead of `now` and `min_interval` is set: the
/// interval is not applied to it (see [`interval_ends`]), and the run says so.
fn uploaded_ahead(
    config: &UploadConfig,
    entry: Option<UploadView<'_>>,
    now: SystemTime,
) -> Option<SystemTime> {
    config.min_interval?;
    entry?.uploaded_at().filter(|at| *at > now)
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
    // Entries whose file has a version on the remote, uploaded or queued again since: the
    // measure of the vanishing guard.
    let mut on_remote = 0;
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
    for i in 0..plan.enqueue.len() {
        let entry = plan.enqueue[i].0.clone();
        if let Some(at) = uploaded_ahead(config, log.get(&entry), now) {
            plan.ahead_of_clock.push((entry.clone(), at));
        }
        if let Some(at) = interval_ends(config, log.get(&entry), now) {
            plan.wait_until(super::set::rank(config, &entry), at);
            plan.coalesced.push((entry, at));
            continue;
        }
        match due(home, disk, config, &entry, None) {
            Ok(item) => plan.due.push(item),
            Err(why) => plan.refused.push((entry, why)),
        }
    }
    for e in log.entries() {
        let Some(entry) = e.path().filter(|p| !duplicates.contains(p)) else {
            continue;
        };
        let status = e.status();
        if status == UploadStatus::Uploaded {
            plan.uploaded += 1;
            on_remote += 1;
            if config.remove.is_some() && is_gone(home, disk, entry) {
                gone.push((entry, e.remote()));
            }
            continue;
        }
        if !status.is_outstanding() || plan.enqueue.iter().any(|(p, _)| p == entry) {
            continue;
        }
        let copy = e.has_remote_copy();
        on_remote += usize::from(copy);
        // Following links: a dangling link is a missing file. An entry that does not
        // decode or holds a NUL is not missing: confine refuses it below.
        if is_gone(home, disk, entry) {
            if copy && config.remove.is_some() {
                // Gone while a newer version waited (min_interval, a backoff): the
                // version that went up before is still on the remote.
                gone.push((entry, e.remote()));
            } else if status == UploadStatus::Skipped {
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
        if let Some(at) = uploaded_ahead(config, Some(e), now) {
            plan.ahead_of_clock.push((entry.to_owned(), at));
        }
        if let Some(at) = e.next_attempt_at().filter(|at| *at > now) {
            plan.waiting += 1;
            plan.backoff_due = plan.backoff_due.into_iter().chain(Some(at)).min();
            plan.wait_until(rank, at);
        } else if let Some(at) = interval_ends(config, Some(e), now) {
            plan.coalesced.push((entry.to_owned(), at));
            plan.wait_until(rank, at);
        } else {
            match due(home, disk, config, entry, e.remote()) {
                Ok(item) => plan.due.push(item),
                Err(why) => plan.refused.push((entry.to_owned(), why)),
            }
        }
    }
    let found = removal::removals(home, config, &gone, on_remote, confirm_removals);
    plan.remove = found.remove;
    plan.refused.extend(found.refused);
    plan.removals_held = found.held;
    hold_the_set(config, &mut plan);
    super::set::order(config, &mut plan.due);
    plan
}

/// While a file of the `set` waits out `min_interval`, the set's other files wait with it,
/// earlier ones too: an index that went up alone would sit beside the old side-car for as
/// long as the side-car's interval lasts, not just while the set's own uploads take.
fn hold_the_set(config: &UploadConfig, plan: &mut UploadPlan) {
    let waiting_until = plan
        .coalesced
        .iter()
        .filter(|(entry, _)| super::set::rank(config, entry).is_some())
        .map(|(_, at)| *at)
        .max();
    let Some(until) = waiting_until else {
        return;
    };
    let (held, due): (Vec<DueUpload>, Vec<DueUpload>) = std::mem::take(&mut plan.due)
        .into_iter()
        .partition(|d| super::set::rank(config, &d.entry).is_some());
    plan.due = due;
    plan.set_waits
        .extend(held.into_iter().map(|d| (d.entry, until)));
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
mod tests;
