//! task_queue.json: every pipeline task. Shared with the pipeline's own steps, so every
//! write takes `task_queue.json.lock`, re-reads the file and changes only the tasks this
//! run touched.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value};

use super::atomic;
use super::json_file::{DocView, Edit, ListDoc};
use crate::config::paths::Paths;
use crate::error::Result;
use crate::os::lock;

/// How long a writer waits for another writer of the queue to finish (as every shared
/// state file's writer does, see json_file.rs).
const LOCK_PATIENCE: Duration = Duration::from_secs(30);
use crate::model::task_status::TaskStatus;
use crate::state::parse_time;

/// Marks a task memsched itself set running (`"running_by": "memsched"`). Its step then
/// runs under retry.lock (steps inherit it), so whoever holds that lock knows such a task
/// is running nowhere: its memsched was killed. A task other runners set running has no
/// such mark and waits out `stuck_after`.
pub const RUNNING_BY: &str = "running_by";
/// The value of [`RUNNING_BY`].
pub const RUNNER: &str = "memsched";

/// The task queue as read from disk; unknown fields and the document shape are kept.
#[derive(Debug, Clone)]
pub struct TaskQueue {
    doc: ListDoc,
    /// The file as this process last wrote it from this queue, if it did.
    written: Option<Identity>,
}

/// Which file is at a path, and as of which change: a rename over it makes a new inode,
/// a write in place a new size or modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Identity {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
}

impl Identity {
    fn of(path: &Path) -> Option<Identity> {
        let meta = std::fs::symlink_metadata(path).ok()?;
        Some(Identity {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        })
    }
}

/// A read-only view of one task.
#[derive(Debug, Clone, Copy)]
pub struct TaskView<'a>(pub &'a Map<String, Value>);

impl<'a> TaskView<'a> {
    fn str(self, key: &str) -> Option<&'a str> {
        self.0.get(key).and_then(Value::as_str)
    }
    #[must_use]
    pub fn id(self) -> Option<&'a str> {
        self.str("id")
    }
    #[must_use]
    pub fn step(self) -> Option<&'a str> {
        self.str("step")
    }
    /// The task's status; `None` when it has none (or not a string).
    #[must_use]
    pub fn status(self) -> Option<TaskStatus> {
        self.str("status").map(TaskStatus::parse)
    }
    /// The data file an `ingest` task is about (its key in ingest_hash.json).
    #[must_use]
    pub fn file(self) -> Option<&'a str> {
        self.str("file")
    }
    /// The content hash the file had when its task was made.
    #[must_use]
    pub fn hash(self) -> Option<&'a str> {
        self.str("hash")
    }
    #[must_use]
    pub fn attempts(self) -> u64 {
        self.0.get("attempts").and_then(Value::as_u64).unwrap_or(0)
    }
    /// The task's own limit, if it sets one.
    #[must_use]
    pub fn max_attempts(self) -> Option<u64> {
        self.0.get("max_attempts").and_then(Value::as_u64)
    }
    #[must_use]
    pub fn priority(self) -> Priority {
        Priority::parse(self.str("priority"))
    }
    #[must_use]
    pub fn created_at(self) -> Option<SystemTime> {
        self.str("created_at").and_then(parse_time)
    }
    #[must_use]
    pub fn updated_at(self) -> Option<SystemTime> {
        self.str("updated_at").and_then(parse_time)
    }
    #[must_use]
    pub fn next_attempt_at(self) -> Option<SystemTime> {
        self.str("next_attempt_at").and_then(parse_time)
    }
    /// When a `running` task last showed life, as far as its times tell: its
    /// `updated_at`, else (missing or not a time) its `started_at`. `None` when neither
    /// can be read, or when the time lies more than `limit` in the future: no clock is
    /// that far off, so it tells nothing (issue 9 item 9).
    #[must_use]
    pub fn last_seen(self, now: SystemTime, limit: Duration) -> Option<SystemTime> {
        let at = self
            .updated_at()
            .or_else(|| self.str("started_at").and_then(parse_time))?;
        let bound = now.checked_add(limit).unwrap_or(now);
        (at <= bound).then_some(at)
    }

    /// Whether this task is done and was last updated before `cutoff`. A done task whose
    /// time cannot be read is never taken as old.
    #[must_use]
    pub fn done_before(self, cutoff: SystemTime) -> bool {
        self.status() == Some(TaskStatus::Done) && self.updated_at().is_some_and(|at| at < cutoff)
    }

    /// Whether memsched set this task running (see [`RUNNING_BY`]).
    #[must_use]
    pub fn is_running_by_memsched(self) -> bool {
        self.0.get(RUNNING_BY).and_then(Value::as_str) == Some(RUNNER)
    }

    /// Whether the task is `running` but last showed life longer than `limit` ago: its
    /// runner is taken as crashed. The one test retry and health share. A time a little
    /// ahead of this clock (another machine's) counts from that time, so the task is
    /// stuck at most `limit` after it; a running task whose time tells nothing is not
    /// stuck but [`TaskView::time_unknown`], and retry restamps it.
    #[must_use]
    pub fn is_stuck(self, now: SystemTime, limit: Duration) -> bool {
        self.status() == Some(TaskStatus::Running)
            && self
                .last_seen(now, limit)
                .is_some_and(|at| now.duration_since(at).is_ok_and(|d| d > limit))
    }

    /// Whether the task is `running` and its times tell nothing of when it last showed
    /// life (see [`TaskView::last_seen`]): why, in words.
    #[must_use]
    pub fn time_unknown(self, now: SystemTime, limit: Duration) -> Option<String> {
        if self.status() != Some(TaskStatus::Running) || self.last_seen(now, limit).is_some() {
            return None;
        }
        Some(match self.0.get("updated_at") {
            None => "has no updated_at (nor a readable started_at)".to_owned(),
            Some(Value::String(text)) if parse_time(text).is_some() => format!(
                "was updated at {text}, more than {} in the future",
                humantime::format_duration(limit)
            ),
            Some(other) => format!("has an updated_at that is not a time: {other}"),
        })
    }

    /// The task's own command, when it has one that is a non-empty list of strings.
    #[must_use]
    pub fn command(self) -> Option<Vec<String>> {
        let argv: Option<Vec<String>> = self
            .0
            .get("command")?
            .as_array()?
            .iter()
            .map(|a| a.as_str().map(str::to_owned))
            .collect();
        argv.filter(|a| !a.is_empty())
    }
}

/// A task's priority; anything unknown counts as normal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Critical,
    High,
    Normal,
    Low,
}

impl Priority {
    #[must_use]
    pub fn parse(text: Option<&str>) -> Priority {
        match text {
            Some("critical") => Priority::Critical,
            Some("high") => Priority::High,
            Some("low") => Priority::Low,
            _ => Priority::Normal,
        }
    }

    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Priority::Critical => "critical",
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
        }
    }
}

impl DocView for TaskQueue {
    fn wrap(doc: ListDoc) -> Self {
        TaskQueue { doc, written: None }
    }
    fn doc(&self) -> &ListDoc {
        &self.doc
    }
}

impl TaskQueue {
    pub fn load(path: &Path) -> Result<TaskQueue> {
        Ok(TaskQueue {
            doc: ListDoc::load(path, "tasks")?,
            written: None,
        })
    }

    /// Every task that is an object; anything else in the list is kept but not read.
    pub fn tasks(&self) -> impl Iterator<Item = TaskView<'_>> {
        self.doc
            .items()
            .iter()
            .filter_map(Value::as_object)
            .map(TaskView)
    }

    /// Sets `fields` on the task with `id` (other fields untouched), or appends a new task.
    pub fn upsert(&mut self, id: &str, fields: Map<String, Value>) {
        self.doc.upsert("id", id, fields);
    }

    /// Removes every task `drop` picks (anything in the list that is not a task is kept);
    /// how many went.
    pub fn remove_where(&mut self, mut drop: impl FnMut(TaskView<'_>) -> bool) -> usize {
        let items = self.doc.items_mut();
        let before = items.len();
        items.retain(|item| !item.as_object().is_some_and(|t| drop(TaskView(t))));
        before - items.len()
    }

    /// The task with `id`, if any.
    #[must_use]
    pub fn get(&self, id: &str) -> Option<TaskView<'_>> {
        self.doc.find("id", id).map(TaskView)
    }

    /// Where each id first sits in the document's list, so that a write changing many
    /// tasks (a retry group, issue 8) finds each in constant time rather than by a scan.
    #[must_use]
    pub fn positions(&self) -> HashMap<String, usize> {
        let mut at = HashMap::new();
        for (i, item) in self.doc.items().iter().enumerate() {
            if let Some(id) = item.get("id").and_then(Value::as_str) {
                at.entry(id.to_owned()).or_insert(i);
            }
        }
        at
    }

    /// The task at `position` of the list (see [`TaskQueue::positions`]).
    #[must_use]
    pub fn at(&self, position: usize) -> Option<TaskView<'_>> {
        self.doc
            .items()
            .get(position)
            .and_then(Value::as_object)
            .map(TaskView)
    }

    /// Sets `fields` on the task at `position` (its other fields untouched); a value of
    /// `None` removes the field. Nothing happens if no task is there.
    pub fn set_at(&mut self, position: usize, fields: Vec<(String, Option<Value>)>) {
        let Some(task) = self
            .doc
            .items_mut()
            .get_mut(position)
            .and_then(Value::as_object_mut)
        else {
            return;
        };
        for (key, value) in fields {
            match value {
                Some(value) => {
                    task.insert(key, value);
                }
                None => {
                    task.shift_remove(&key);
                }
            }
        }
    }

    /// Locked read-modify-write (see [`ListDoc::update`]); `change` returns whether it
    /// changed anything, and a value.
    pub fn update<T>(paths: &Paths, change: impl FnOnce(&mut TaskQueue) -> Edit<T>) -> Result<T> {
        ListDoc::update(&paths.task_queue, "tasks", change)
    }

    /// [`TaskQueue::update`], starting from `cache` (the queue as this process last wrote
    /// it through this function) instead of reading and parsing the file again, when no
    /// one has written it since: it is still the file this process put there (same
    /// inode, size and modification time) and holds exactly the bytes it wrote. A retry
    /// group's writes then parse a large queue once, not twice per group (issue 8).
    /// Anyone else's write, locked or not, makes it read the file afresh.
    pub fn update_cached<T>(
        paths: &Paths,
        cache: &mut Option<TaskQueue>,
        change: impl FnOnce(&mut TaskQueue) -> Edit<T>,
    ) -> Result<T> {
        let path = &paths.task_queue;
        let _guard = lock::acquire_within(&Paths::file_lock(path), LOCK_PATIENCE)?;
        let mut queue = match cache.take() {
            Some(q) if q.still_on_disk(path) => q,
            _ => TaskQueue::load(path)?,
        };
        // `change` reports every change it makes: the cache must stay what was written.
        let (changed, value) = change(&mut queue).split();
        if changed {
            queue.written = None;
            queue.doc.save()?;
            queue.written = Identity::of(path);
        }
        *cache = Some(queue);
        Ok(value)
    }

    /// Whether the file at `path` is still what this queue last wrote there.
    fn still_on_disk(&self, path: &Path) -> bool {
        let Some(written) = self.written else {
            return false;
        };
        Identity::of(path) == Some(written)
            && crate::os::regular_file::read(path)
                .is_ok_and(|bytes| atomic::is_own_write(path, &bytes))
    }

    /// Tasks no one can act on safely, one sentence each: a task without an id (nothing
    /// can record its result) and an id held by more than one task (a result would land on
    /// the wrong one). Retry runs none of them and the watchdog reports them. The one home
    /// of this rule.
    #[must_use]
    pub fn malformed(&self) -> Vec<String> {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        let mut out = Vec::new();
        for (place, task) in self.tasks().enumerate() {
            match task.id() {
                Some(id) => *seen.entry(id).or_default() += 1,
                None => out.push(format!(
                    "task #{} has no id: give it one so its result can be recorded",
                    place + 1
                )),
            }
        }
        let mut twice: Vec<(&str, usize)> = seen.into_iter().filter(|(_, n)| *n > 1).collect();
        twice.sort_unstable();
        out.extend(twice.into_iter().map(|(id, n)| {
            format!("task id {id:?} is used by {n} tasks: give each its own id; none of them runs")
        }));
        out
    }

    /// The ids that name more than one task (see [`TaskQueue::malformed`]).
    #[must_use]
    pub fn duplicate_ids(&self) -> HashSet<&str> {
        let mut seen = HashSet::new();
        self.tasks()
            .filter_map(TaskView::id)
            .filter(|id| !seen.insert(*id))
            .collect()
    }

    /// The task with `id` as JSON, for a step's stdin.
    #[must_use]
    pub fn task_json(&self, id: &str) -> Option<Value> {
        self.get(id).map(|t| Value::Object(t.0.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn add(queue: &mut TaskQueue, id: &str) -> Edit<()> {
        let mut fields = Map::new();
        fields.insert("status".into(), "failed".into());
        queue.upsert(id, fields);
        Edit::Changed(())
    }

    fn has(cache: &mut Option<TaskQueue>, paths: &Paths, id: &str) -> bool {
        TaskQueue::update_cached(paths, cache, |q| Edit::Unchanged(q.get(id).is_some())).unwrap()
    }

    #[test]
    fn a_cached_queue_is_reused_only_while_the_file_is_what_this_process_wrote() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("paths.json"), "{}").unwrap();
        let paths = Paths::load(&dir.path().join("paths.json")).unwrap();
        let mut cache = None;
        TaskQueue::update_cached(&paths, &mut cache, |q| add(q, "a")).unwrap();
        assert!(cache.as_ref().unwrap().written.is_some());
        assert!(cache.as_ref().unwrap().still_on_disk(&paths.task_queue));

        // Another writer replaces the file (rename): read afresh.
        let tmp = dir.path().join("q.tmp");
        std::fs::write(&tmp, r#"{"tasks": [{"id": "a"}, {"id": "b"}]}"#).unwrap();
        std::fs::rename(&tmp, &paths.task_queue).unwrap();
        assert!(has(&mut cache, &paths, "b"));

        // This process writes again; then someone edits in place, same size, and puts the
        // modification time back: the bytes tell.
        TaskQueue::update_cached(&paths, &mut cache, |q| add(q, "c")).unwrap();
        let text = std::fs::read_to_string(&paths.task_queue).unwrap();
        let mtime = std::fs::metadata(&paths.task_queue)
            .unwrap()
            .modified()
            .unwrap();
        let edited = text.replacen("\"c\"", "\"d\"", 1);
        assert_eq!(edited.len(), text.len());
        std::fs::write(&paths.task_queue, edited).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&paths.task_queue)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        assert!(mtime > UNIX_EPOCH);
        assert!(has(&mut cache, &paths, "d"));
        assert!(!has(&mut cache, &paths, "c"));
    }
}
