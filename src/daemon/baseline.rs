//! Whether a change to a state file matters. memsched's own writes never do. A change to
//! task_queue.json matters only when its failed tasks changed, one to upload_log.json only
//! when its outstanding uploads changed, and any other state file when its content changed.
//! A file that does not parse is taken as mid-write: the writer's next event will tell.

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::config::paths::Paths;
use crate::model::task_status::TaskStatus;
use crate::model::upload_status::UploadStatus;
use crate::state::atomic;
use crate::state::json_file::list_items;
use crate::state::task_queue::TaskView;
use crate::state::upload_log::UploadView;

/// What a state file's change amounts to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Verdict {
    OwnWrite,
    /// The part that matters did not change (say, only a running task's timestamp).
    Unchanged(&'static str),
    Unreadable(String),
    Changed,
}

/// The last seen fingerprint of each state file.
#[derive(Debug, Default)]
pub(super) struct Baselines {
    seen: HashMap<PathBuf, u64>,
    /// The ids of the open (failed or pending) tasks last seen in task_queue.json.
    open_tasks: HashSet<String>,
}

impl Baselines {
    /// Fingerprints of the shared files as they are now, so the first change to them can be
    /// told from no change.
    #[must_use]
    pub(super) fn capture(paths: &Paths) -> Baselines {
        let mut b = Baselines::default();
        for path in [&paths.task_queue, &paths.upload_log] {
            if let Ok(fp) = fingerprint(paths, path, &read(path)) {
                b.seen.insert(path.clone(), fp);
            }
        }
        b.open_tasks = open_task_ids(&read(&paths.task_queue));
        b
    }

    /// Judges the current content of `path` and remembers it.
    pub(super) fn judge(&mut self, paths: &Paths, path: &Path) -> Verdict {
        let bytes = read(path);
        let fp = match fingerprint(paths, path, &bytes) {
            Ok(fp) => fp,
            Err(e) => return Verdict::Unreadable(e),
        };
        let before = self.seen.insert(path.to_path_buf(), fp);
        let mut new_open_task = false;
        if path == paths.task_queue {
            let open = open_task_ids(&bytes);
            new_open_task = open.iter().any(|id| !self.open_tasks.contains(id));
            self.open_tasks = open;
        }
        // memsched's own rewrite of the queue re-reads it first, so it may carry a task
        // another writer appended a moment before: judged by content, that is new work.
        if atomic::is_own_write(path, &bytes) && !new_open_task {
            Verdict::OwnWrite
        } else if before == Some(fp) {
            Verdict::Unchanged(what_matters(paths, path))
        } else {
            Verdict::Changed
        }
    }
}

/// A missing file reads as empty.
fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_default()
}

fn what_matters(paths: &Paths, path: &Path) -> &'static str {
    if path == paths.task_queue {
        "its failed tasks"
    } else if path == paths.upload_log {
        "its outstanding uploads"
    } else {
        "its content"
    }
}

/// Whether a task is work for retry: failed, or pending (a task with no status, or one
/// that is not a string, is pending).
fn is_open(task: TaskView<'_>) -> bool {
    matches!(
        task.status(),
        None | Some(TaskStatus::Failed | TaskStatus::Pending)
    )
}

/// Whether an upload entry is still to do: anything not uploaded (a missing status is
/// pending).
fn is_outstanding(entry: UploadView<'_>) -> bool {
    entry.status() != UploadStatus::Uploaded
}

/// The tasks of task_queue.json's text (none when it does not parse), read as the queue's
/// own reader reads them.
fn tasks(doc: &Value) -> impl Iterator<Item = TaskView<'_>> {
    list_items(doc, "tasks")
        .iter()
        .filter_map(Value::as_object)
        .map(TaskView)
}

/// The ids of the tasks that are failed or pending and due now (no `next_attempt_at`
/// ahead): work for retry at once. A task retry itself failed again waits for its backoff,
/// so retry's own rewrites of the queue do not wake it again.
fn open_task_ids(bytes: &[u8]) -> HashSet<String> {
    let now = std::time::SystemTime::now();
    let Ok(doc) = serde_json::from_slice::<Value>(bytes) else {
        return HashSet::new();
    };
    tasks(&doc)
        .filter(|&t| is_open(t))
        .filter(|t| t.next_attempt_at().is_none_or(|at| at <= now))
        // The id as written (a number stays one), so no id is lost to its type.
        .filter_map(|t| t.0.get("id").map(ToString::to_string))
        .collect()
}

/// The part of a state file that matters, hashed: for the shared files, the identity and
/// schedule of each open task or outstanding upload, as written.
fn fingerprint(paths: &Paths, path: &Path, bytes: &[u8]) -> Result<u64, String> {
    let mut h = DefaultHasher::new();
    let shared = path == paths.task_queue || path == paths.upload_log;
    if !shared || bytes.is_empty() {
        bytes.hash(&mut h);
        return Ok(h.finish());
    }
    let doc: Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let open: Vec<&Map<String, Value>> = if path == paths.task_queue {
        tasks(&doc).filter(|&t| is_open(t)).map(|t| t.0).collect()
    } else {
        list_items(&doc, "uploads")
            .iter()
            .filter_map(Value::as_object)
            .map(UploadView)
            .filter(|&u| is_outstanding(u))
            .map(|u| u.0)
            .collect()
    };
    let field = |item: &Map<String, Value>, name: &str| {
        item.get(name).map(Value::to_string).unwrap_or_default()
    };
    let mut relevant: Vec<[String; 4]> = open
        .into_iter()
        .map(|i| {
            [
                field(i, "id"),
                field(i, "path"),
                field(i, "attempts"),
                field(i, "next_attempt_at"),
            ]
        })
        .collect();
    relevant.sort();
    relevant.hash(&mut h);
    Ok(h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(dir: &Path) -> Paths {
        std::fs::write(dir.join("paths.json"), "{}").unwrap();
        Paths::load(&dir.join("paths.json")).unwrap()
    }

    #[test]
    fn only_changes_to_failed_tasks_matter_and_own_writes_never() {
        let dir = tempfile::tempdir().unwrap();
        let p = paths(dir.path());
        let q = p.task_queue.clone();
        std::fs::write(
            &q,
            r#"{"tasks": [{"id": "a", "status": "running", "updated_at": "1"}]}"#,
        )
        .unwrap();
        let mut b = Baselines::capture(&p);
        std::fs::write(
            &q,
            r#"{"tasks": [{"id": "a", "status": "running", "updated_at": "2"}]}"#,
        )
        .unwrap();
        assert_eq!(b.judge(&p, &q), Verdict::Unchanged("its failed tasks"));
        std::fs::write(
            &q,
            r#"{"tasks": [{"id": "a", "status": "failed", "attempts": 1}]}"#,
        )
        .unwrap();
        assert_eq!(b.judge(&p, &q), Verdict::Changed);
        atomic::write(&q, br#"{"tasks": [{"id": "a", "status": "done"}]}"#).unwrap();
        assert_eq!(b.judge(&p, &q), Verdict::OwnWrite);
        std::fs::write(&q, r#"{"tasks": [{"id": "a", "status": "do"#).unwrap();
        assert!(matches!(b.judge(&p, &q), Verdict::Unreadable(_)));
    }

    #[test]
    fn other_state_files_compare_content() {
        let dir = tempfile::tempdir().unwrap();
        let p = paths(dir.path());
        let f = dir.path().join("notes.json");
        let mut b = Baselines::default();
        std::fs::write(&f, "1").unwrap();
        assert_eq!(b.judge(&p, &f), Verdict::Changed);
        assert_eq!(b.judge(&p, &f), Verdict::Unchanged("its content"));
    }

    /// Issue 9 case 12: memsched's own rewrite of the queue re-reads it first, so it can
    /// carry a task another writer appended a moment before. That task is new work.
    #[test]
    fn an_own_write_carrying_a_task_appended_by_another_writer_is_new_work() {
        let dir = tempfile::tempdir().unwrap();
        let p = paths(dir.path());
        let q = p.task_queue.clone();
        atomic::write(&q, br#"{"tasks": [{"id": "a", "status": "failed"}]}"#).unwrap();
        let mut b = Baselines::capture(&p);
        atomic::write(
            &q,
            br#"{"tasks": [{"id": "a", "status": "running"}, {"id": "b", "status": "pending"}]}"#,
        )
        .unwrap();
        assert_eq!(
            b.judge(&p, &q),
            Verdict::Changed,
            "b was appended by another writer"
        );
        atomic::write(
            &q,
            br#"{"tasks": [{"id": "a", "status": "failed", "attempts": 2, "next_attempt_at": "2999-01-01T00:00:00Z"}, {"id": "b", "status": "pending"}]}"#,
        )
        .unwrap();
        assert_eq!(
            b.judge(&p, &q),
            Verdict::OwnWrite,
            "nothing new in memsched's own write"
        );
    }
}
