//! task_queue.json: every pipeline task. Shared with the pipeline's own steps, so every
//! write takes `task_queue.json.lock`, re-reads the file and changes only the tasks this
//! run touched.

use std::path::Path;
use std::time::Duration;

use serde_json::{Map, Value};

use super::json_file::ListDoc;
use crate::error::Result;
use crate::lock;
use crate::paths::Paths;

/// How long a writer waits for another writer of the queue to finish.
const LOCK_PATIENCE: Duration = Duration::from_secs(30);

/// The task queue as read from disk; unknown fields and the document shape are kept.
#[derive(Debug, Clone)]
pub struct TaskQueue {
    doc: ListDoc,
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
    #[must_use]
    pub fn status(self) -> Option<&'a str> {
        self.str("status")
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
}

impl TaskQueue {
    pub fn load(path: &Path) -> Result<TaskQueue> {
        Ok(TaskQueue {
            doc: ListDoc::load(path, "tasks")?,
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
        let items = self.doc.items_mut();
        let existing = items
            .iter_mut()
            .filter_map(Value::as_object_mut)
            .find(|t| t.get("id").and_then(Value::as_str) == Some(id));
        match existing {
            Some(task) => task.extend(fields),
            None => {
                let mut task = Map::new();
                task.insert("id".to_owned(), Value::from(id));
                task.extend(fields);
                items.push(Value::Object(task));
            }
        }
    }

    /// The task with `id`, if any.
    #[must_use]
    pub fn get(&self, id: &str) -> Option<TaskView<'_>> {
        self.tasks().find(|t| t.id() == Some(id))
    }

    /// Locked read-modify-write: takes the queue's lock, re-reads the file, applies `change`
    /// and writes the file back when `change` returns true.
    pub fn update(paths: &Paths, change: impl FnOnce(&mut TaskQueue) -> bool) -> Result<()> {
        let _guard = lock::acquire_within(&Paths::file_lock(&paths.task_queue), LOCK_PATIENCE)?;
        let mut queue = TaskQueue::load(&paths.task_queue)?;
        if change(&mut queue) {
            queue.doc.save()?;
        }
        Ok(())
    }
}
