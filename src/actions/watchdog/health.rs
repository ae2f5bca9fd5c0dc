//! The pipeline's health, read from every state file and lock: what the watchdog writes to
//! watchdog_state.json and what `memsched status` shows.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

use serde::Serialize;
use serde_json::{Value, json};

pub(crate) use super::judge::Status;
use super::judge::{Evidence, LISTED, list};
use crate::actions::retry::{OpenBreaker, open_from_log};
use crate::actions::walk;
use crate::config::paths::Paths;
use crate::config::rules::{IngestConfig, Rules, defaults};
use crate::error::Error;
use crate::model::action::Action;
use crate::model::file_key;
use crate::model::outcome::Outcome;
use crate::model::task_status::TaskStatus;
use crate::model::upload_status::UploadStatus;
use crate::model::watcher_kind::WatcherKind;
use crate::model::words;
use crate::os::lock;
use crate::run::report::ActionReport;
use crate::state::ingest_hash::{IngestHash, Record};
use crate::state::stat::Stat;
use crate::state::task_queue::TaskQueue;
use crate::state::upload_log::UploadLog;
use crate::state::watchdog_state::{self, CanaryStatus, WatcherReport};
use crate::state::{scheduler_log, timestamp};

#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct UploadHealth {
    pub outstanding: usize,
    pub failed: usize,
    pub given_up: usize,
    pub skipped: usize,
    pub uploaded: usize,
    /// Entries memsched would not upload (outside the home, a NUL, an unsafe remote).
    pub refused: usize,
    /// The first refused entries' paths, as written.
    pub refused_paths: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct LastRun {
    pub at: String,
    pub outcome: Outcome,
    pub summary: String,
    /// The run's own error, when it failed: what the watchdog quotes of its own failed
    /// run, whose summary is that run's health and would nest (issue 21 item 8).
    #[serde(skip)]
    pub error: Option<String>,
}

/// A failed or dead task, as `status` lists it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TaskLine {
    pub id: String,
    pub step: Option<String>,
    pub status: String,
    pub attempts: u64,
    pub max_attempts: u64,
    pub last_error: Option<String>,
    /// When retry takes it on again (failed tasks only).
    pub next_attempt_at: Option<String>,
    #[serde(skip)]
    pub next_at: Option<SystemTime>,
    /// When the circuit breaker open for its step closes, if that is later than
    /// `next_at`: retry leaves it alone until then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breaker_until: Option<String>,
    #[serde(skip)]
    pub paused_until: Option<SystemTime>,
}

/// Notes on each failed task whose step an open breaker pauses when it closes (issue 21
/// item 6: status said "next retry now" under a breaker open for hours).
fn paused_by_breakers(tasks: &mut [TaskLine], open: &[OpenBreaker]) {
    for t in tasks
        .iter_mut()
        .filter(|t| t.status == TaskStatus::Failed.name())
    {
        let until = open
            .iter()
            .filter(|b| t.step.as_deref() == Some(b.step.as_str()))
            .map(|b| b.until)
            .max()
            .filter(|until| t.next_at.is_none_or(|at| at < *until));
        t.paused_until = until;
        t.breaker_until = until.map(timestamp);
    }
}

/// Whether the watcher that last wrote its report in watchdog_state.json still runs.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct WatcherSeen {
    /// Its pid is alive and is a memsched process.
    pub running: bool,
    pub pid: u64,
    /// `inotify` or `poll`.
    pub kind: Option<WatcherKind>,
    /// When it started (`started_at` of its report, when it writes one).
    pub since: Option<String>,
    /// When it last wrote its report.
    pub updated_at: Option<String>,
}

/// The version of the health's shape (`status --json`, watchdog_state.json).
pub(crate) const HEALTH_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Health {
    /// [`HEALTH_VERSION`].
    pub version: u32,
    pub status: Status,
    pub checked_at: String,
    /// Why the status is not ok, one sentence each.
    pub problems: Vec<String>,
    /// Tasks by status.
    pub tasks: BTreeMap<String, usize>,
    pub stuck_tasks: Vec<String>,
    pub dead_tasks: Vec<String>,
    /// Failed and dead tasks (the first 50 of each) with their errors.
    pub failed_tasks: Vec<TaskLine>,
    pub uploads: UploadHealth,
    /// Whether upload is configured (else `uploads` counts only what others logged).
    pub uploads_configured: bool,
    /// Whether retry is configured (else a failed task is never taken on again).
    pub retry_configured: bool,
    /// Data files whose stat does not match ingest_hash.json (new, changed or touched).
    pub unindexed_files: Option<usize>,
    pub data_files: Option<usize>,
    /// Records whose file ingest found gone and whose removal no step has confirmed yet
    /// (a remove step failed on them, or held them back, or none is configured).
    pub pending_removals: Option<usize>,
    pub last_runs: BTreeMap<String, LastRun>,
    pub breakers: Vec<Value>,
    /// State files that do not parse: (file, error).
    pub unreadable_files: Vec<Value>,
    /// Locks held by a live process other than this one: name -> pid.
    pub locks: BTreeMap<String, u32>,
    /// Locks only helpers a killed run's step left behind hold (issue 18 item 12): the
    /// lock's name -> who holds it. The next run of that action sets them aside.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub leftover_locks: BTreeMap<String, LeftoverLock>,
    /// The running watcher's own report, if one runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watcher: Option<WatcherReport>,
    /// The last watcher that reported itself, and whether it still runs; `None` when no
    /// watcher ever wrote its report.
    pub watcher_process: Option<WatcherSeen>,
    /// The instant of `checked_at`, for times relative to it.
    #[serde(skip)]
    pub now: SystemTime,
}

/// A lock only helpers a killed run's step left behind hold.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LeftoverLock {
    /// "pid 441 (sleep 300)", each holder so.
    pub holders: String,
    pub pids: Vec<u32>,
}

/// Reads everything and judges. `current` holds the reports of this run so far, which are
/// not in scheduler_log.json yet.
#[must_use]
pub(crate) fn assess(
    paths: &Paths,
    rules: &Rules,
    current: &[ActionReport],
    now: SystemTime,
) -> Health {
    let mut h = Health {
        version: HEALTH_VERSION,
        status: Status::Ok,
        checked_at: timestamp(now),
        problems: Vec::new(),
        tasks: BTreeMap::new(),
        stuck_tasks: Vec::new(),
        dead_tasks: Vec::new(),
        failed_tasks: Vec::new(),
        uploads: UploadHealth::default(),
        uploads_configured: rules.upload.is_some(),
        retry_configured: rules.retry.is_some(),
        unindexed_files: None,
        data_files: None,
        pending_removals: None,
        last_runs: BTreeMap::new(),
        breakers: Vec::new(),
        unreadable_files: Vec::new(),
        locks: BTreeMap::new(),
        leftover_locks: BTreeMap::new(),
        watcher: None,
        watcher_process: None,
        now,
    };
    let unreadable = |e: &Error| {
        let file = match e {
            Error::StateParse { path, .. }
            | Error::StateShape { path, .. }
            | Error::StateRead { path, .. } => path.display().to_string(),
            _ => String::new(),
        };
        json!({"file": file, "error": e.chain()})
    };
    let never_run = match TaskQueue::load(&paths.task_queue) {
        Ok(q) => tasks(&mut h, &q, rules, now),
        Err(e) => {
            h.unreadable_files.push(unreadable(&e));
            0
        }
    };
    match UploadLog::load(&paths.upload_log) {
        Ok(log) => uploads(&mut h, &log, rules),
        Err(e) => h.unreadable_files.push(unreadable(&e)),
    }
    state_folder(&mut h, paths);
    match IngestHash::load(&paths.ingest_hash) {
        Ok(hashes) => unindexed(&mut h, paths, rules, &hashes),
        Err(e) => h.unreadable_files.push(unreadable(&e)),
    }
    match watchdog_state::read_watcher(&paths.watchdog_state) {
        Ok(report) => watcher(&mut h, report),
        Err(e) => h.unreadable_files.push(unreadable(&e)),
    }
    let runs = scheduler_log::read(paths).unwrap_or_else(|e| {
        h.unreadable_files.push(unreadable(&e));
        Vec::new()
    });
    // This run's reports so far are the newest, though not in the log yet.
    let this_run = timestamp(now);
    let logged = runs
        .iter()
        .map(|r| (r.started_at.as_str(), r.actions.as_slice()));
    last_runs(&mut h, logged.chain([(this_run.as_str(), current)]));
    let reports = runs.iter().map(|r| r.actions.as_slice());
    let cooldown = rules
        .retry
        .as_ref()
        .map_or(defaults::BREAKER_COOLDOWN, |r| r.breaker.cooldown);
    let open = open_from_log(reports.chain([current]), now, cooldown);
    paused_by_breakers(&mut h.failed_tasks, &open);
    h.breakers = open.iter().map(OpenBreaker::to_json).collect();
    for name in Action::ALL
        .map(Action::name)
        .into_iter()
        .chain(["scheduler"])
    {
        let path = paths.action_lock(name);
        if let Some(left) = lock::leftover(&path) {
            let pids = left.holders.iter().map(|(pid, _)| *pid).collect();
            let holders = left.describe();
            h.leftover_locks
                .insert(name.to_owned(), LeftoverLock { holders, pids });
        } else if let Some(pid) = live_holder(&path) {
            h.locks.insert(name.to_owned(), pid);
        }
    }
    judge(&mut h, never_run);
    h
}

/// Reads the tasks into `h`; how many failed ones retry never runs (no id, or an id
/// another task shares): they wait for a person, not for a retry.
fn tasks(h: &mut Health, queue: &TaskQueue, rules: &Rules, now: SystemTime) -> usize {
    let stuck_after = rules
        .retry
        .as_ref()
        .map_or(defaults::STUCK_AFTER, |r| r.stuck_after);
    let max_attempts = rules
        .retry
        .as_ref()
        .map_or(defaults::MAX_ATTEMPTS, |r| r.max_attempts);
    let mut listed = (0, 0);
    h.problems.extend(
        queue
            .malformed()
            .into_iter()
            .map(|m| format!("task_queue.json: {m}")),
    );
    let duplicates = queue.duplicate_ids();
    let mut never_run = Vec::new();
    for (place, t) in queue.tasks().enumerate() {
        let status = t.status();
        if status == Some(TaskStatus::Failed) {
            match t.id() {
                None => never_run.push(format!("task #{}", place + 1)),
                Some(id) if duplicates.contains(id) => never_run.push(format!("{id:?}")),
                Some(_) => {}
            }
        }
        let shown = status.as_ref().map_or("(none)", TaskStatus::name);
        *h.tasks.entry(shown.to_owned()).or_default() += 1;
        let id = t.id().unwrap_or("(no id)").to_owned();
        let shown_count = match status {
            Some(TaskStatus::Dead) => Some(&mut listed.1),
            Some(TaskStatus::Failed) => Some(&mut listed.0),
            _ => None,
        };
        if let Some(n) = shown_count.filter(|n| **n < LISTED) {
            *n += 1;
            let next_at = t
                .next_attempt_at()
                .filter(|_| status == Some(TaskStatus::Failed));
            h.failed_tasks.push(TaskLine {
                id: id.clone(),
                step: t.step().map(str::to_owned),
                status: shown.to_owned(),
                attempts: t.attempts(),
                max_attempts: t.max_attempts().unwrap_or(u64::from(max_attempts)),
                last_error: t
                    .0
                    .get("last_error")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                next_attempt_at: next_at.map(timestamp),
                next_at,
                breaker_until: None,
                paused_until: None,
            });
        }
        if status == Some(TaskStatus::Dead) {
            h.dead_tasks.push(id);
        } else if t.is_stuck(now, stuck_after) {
            h.stuck_tasks.push(id);
        }
    }
    // Retry skips them (see `TaskQueue::malformed`): they are no retry's to wait for.
    if !never_run.is_empty() {
        never_run.sort();
        h.problems.push(format!(
            "{} never run (no id, or an id another task shares): {}",
            words::count(never_run.len(), "failed task", "failed tasks"),
            list(&never_run)
        ));
    }
    never_run.len()
}

fn uploads(h: &mut Health, log: &UploadLog, rules: &Rules) {
    let max = rules
        .upload
        .as_ref()
        .map_or(defaults::MAX_ATTEMPTS, |u| u.max_attempts);
    h.problems.extend(
        log.malformed()
            .into_iter()
            .map(|m| format!("upload_log.json: {m}")),
    );
    for e in log.entries() {
        match e.status() {
            UploadStatus::Uploaded => h.uploads.uploaded += 1,
            UploadStatus::Skipped => h.uploads.skipped += 1,
            UploadStatus::Refused => {
                h.uploads.refused += 1;
                if h.uploads.refused_paths.len() < LISTED {
                    let path = e.path().unwrap_or("(no path)");
                    h.uploads
                        .refused_paths
                        .push(path.escape_debug().to_string());
                }
            }
            UploadStatus::Failed if e.attempts() >= u64::from(max) => h.uploads.given_up += 1,
            UploadStatus::Failed => {
                h.uploads.failed += 1;
                h.uploads.outstanding += 1;
            }
            UploadStatus::Pending | UploadStatus::Other(_) => h.uploads.outstanding += 1,
            // Gone from the Data folder and from the remote: nothing owed.
            UploadStatus::Removed => {}
        }
    }
}

fn unindexed(h: &mut Health, paths: &Paths, rules: &Rules, hashes: &IngestHash) {
    let Some(config) = &rules.ingest else { return };
    if !paths.data_dir.is_dir() {
        h.problems.push(format!(
            "data_dir {} does not exist",
            paths.data_dir.display()
        ));
        return;
    }
    let (mut files, mut stale) = (0, 0);
    let mut unread_files = Vec::new();
    let mut unreadable =
        walk::memory_files(&paths.data_dir, Path::new(""), config, &mut |rel, meta| {
            files += 1;
            let recorded = hashes.get(&file_key::key(&rel)).and_then(Record::stat);
            if !recorded.is_some_and(|r| Stat::of(meta).matches(&r)) {
                stale += 1;
                // A file ingest must read and cannot: asked of the files to read only, so
                // an indexed home costs no look.
                let path = paths.data_dir.join(&rel);
                let readable = nix::unistd::faccessat(
                    None,
                    &path,
                    nix::unistd::AccessFlags::R_OK,
                    nix::fcntl::AtFlags::AT_EACCESS,
                );
                if let Err(e) = readable {
                    let e = std::io::Error::from(e);
                    unread_files.push((file_key::display(&rel), e.to_string()));
                }
            }
        });
    unreadable.append(&mut unread_files);
    h.data_files = Some(files);
    h.unindexed_files = Some(stale);
    pending_removals(h, config, hashes);
    // A folder or file memsched cannot read holds memories no run can send (issue 9
    // case 8): health says so, naming them, instead of counting around them.
    if !unreadable.is_empty() {
        let named: Vec<String> = unreadable
            .iter()
            .map(|(path, e)| format!("{path} ({e})"))
            .collect();
        h.problems.push(format!(
            "cannot read {} in data_dir: {}",
            words::count(unreadable.len(), "entry", "entries"),
            list(&named)
        ));
    }
}

/// Counts the pending removals, and says what needs a person: a remove step that has not
/// confirmed them, or (without one) more gone at once than `max_remove` allows, which is
/// what an unmounted disk or a sync tool emptying data_dir looks like.
fn pending_removals(h: &mut Health, config: &IngestConfig, hashes: &IngestHash) {
    let pending = hashes
        .records()
        .filter(|(_, r)| r.gone_at().is_some())
        .count();
    h.pending_removals = Some(pending);
    if pending == 0 {
        return;
    }
    let memories = words::count(pending, "memory", "memories");
    if config.remove.is_some() {
        h.problems.push(format!(
            "{memories} gone from data_dir still in the index: the remove step failed on them or they were held back as too many at once (memsched log says which; `memsched --once --mode ingest --confirm-removals` sends held ones)"
        ));
    } else if !config.max_remove.allows(pending, hashes.len()) {
        h.problems.push(format!(
            "{memories} of {} recorded are gone from data_dir, more than max_remove ({}): is a disk unmounted or a sync tool emptying it? (`memsched forget --all` acknowledges them)",
            hashes.len(),
            config.max_remove
        ));
    }
}

/// The state folder must take memsched's writes (the temporary file of an atomic
/// replace, the locks): a read-only one fails every action. One not made yet is made by
/// the first run, in the nearest folder that exists.
fn state_folder(h: &mut Health, paths: &Paths) {
    let Some(existing) = paths.state_dir.ancestors().find(|d| d.exists()) else {
        return;
    };
    let writable = nix::unistd::access(existing, nix::unistd::AccessFlags::W_OK);
    if let Err(e) = writable {
        h.problems.push(format!(
            "the state folder {} is not writable ({}): every action fails until it is",
            paths.state_dir.display(),
            e.desc()
        ));
    }
}

/// What the watcher last said about itself (see `daemon`): its problems count while it
/// still runs; a report left by a watcher that is gone is shown as stale.
fn watcher(h: &mut Health, report: Option<WatcherReport>) {
    let Some(w) = report else { return };
    let pid = u64::from(w.pid);
    let alive = is_memsched(pid);
    h.watcher_process = Some(WatcherSeen {
        running: alive,
        pid,
        kind: w.kind,
        since: w.started_at.clone(),
        updated_at: w.updated_at.clone(),
    });
    if !alive {
        return;
    }
    if let Some(e) = &w.rules_error {
        h.problems
            .push(format!("the watcher keeps its last good rules: {e}"));
    }
    if let Some(why) = &w.fell_back {
        h.problems.push(format!(
            "the watcher polls every {:?} instead of hearing changes through inotify: {why}",
            crate::watch::POLL_INTERVAL
        ));
    }
    if let Some(canary) = w
        .canary
        .as_ref()
        .filter(|c| c.status == CanaryStatus::Missed)
    {
        h.problems.push(format!(
            "the watcher missed its liveness canary at {} and was rebuilt ({} now)",
            canary.at,
            w.kind.map_or("?", WatcherKind::name)
        ));
    }
    h.watcher = Some(w);
}

/// Whether `pid` is a live memsched process (not a pid reused by another program since
/// the report was written). Its executable's name decides; where that cannot be read
/// (another user's process), its command name.
fn is_memsched(pid: u64) -> bool {
    let proc = format!("/proc/{pid}");
    if let Ok(exe) = std::fs::read_link(format!("{proc}/exe")) {
        return exe
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("memsched"));
    }
    std::fs::read_to_string(format!("{proc}/comm")).is_ok_and(|c| c.trim() == "memsched")
}

/// Each action's newest turn that did something (not skipped, not a dry run), from
/// `runs` given oldest first as (when it started, its reports).
fn last_runs<'a>(h: &mut Health, runs: impl IntoIterator<Item = (&'a str, &'a [ActionReport])>) {
    for (at, reports) in runs {
        for a in reports {
            if matches!(a.outcome, Outcome::Skipped | Outcome::WouldRun) {
                continue;
            }
            h.last_runs.insert(
                a.action.name().to_owned(),
                LastRun {
                    at: at.to_owned(),
                    outcome: a.outcome,
                    summary: a.summary.clone(),
                    error: a.error.clone(),
                },
            );
        }
    }
}

/// The process that holds a lock as the kernel says, when it is not us (issue 20: the
/// pid written in the file names an idle or dead process). Looking takes no lock.
fn live_holder(path: &Path) -> Option<u32> {
    lock::holder(path).filter(|pid| *pid != std::process::id())
}

/// Judges what was read (see [`super::judge`]): the status, and every problem worst first.
/// `never_run` failed tasks are no retry's to wait for (see [`tasks`]).
fn judge(h: &mut Health, never_run: usize) {
    let evidence = Evidence {
        unreadable_files: &h.unreadable_files,
        dead_tasks: &h.dead_tasks,
        stuck_tasks: &h.stuck_tasks,
        failed_tasks: h
            .tasks
            .get(TaskStatus::Failed.name())
            .map_or(0, |n| n.saturating_sub(never_run)),
        uploads_given_up: h.uploads.given_up,
        uploads_refused: h.uploads.refused,
        refused_paths: &h.uploads.refused_paths,
        uploads_failed: h.uploads.failed,
        breakers: &h.breakers,
        failed_runs: h
            .last_runs
            .iter()
            .filter(|(_, run)| run.outcome == Outcome::Failed)
            .map(|(action, run)| {
                let own = (action == Action::Watchdog.name())
                    .then_some(run.error.as_deref())
                    .flatten();
                (
                    action.as_str(),
                    run.at.as_str(),
                    own.unwrap_or(&run.summary),
                )
            })
            .collect(),
    };
    let judged = super::judge::judge(&evidence, std::mem::take(&mut h.problems));
    h.status = judged.status;
    h.problems = judged.problems;
}
