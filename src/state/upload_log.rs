//! upload_log.json: one entry per file to push. Shared with the upload step, so every write
//! takes `upload_log.json.lock` and changes only the entries this run touched.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::SystemTime;

use serde_json::{Map, Value};

use super::json_file::{DocView, Edit, ListDoc};
use super::parse_time;
use super::stat::Stat;
use crate::error::Result;
use crate::model::upload_status::UploadStatus;

/// The upload log as read; unknown fields and the document shape are kept.
#[derive(Debug, Clone)]
pub struct UploadLog {
    doc: ListDoc,
}

/// A read-only view of one entry.
#[derive(Debug, Clone, Copy)]
pub struct UploadView<'a>(pub &'a Map<String, Value>);

impl<'a> UploadView<'a> {
    fn str(self, key: &str) -> Option<&'a str> {
        self.0.get(key).and_then(Value::as_str)
    }
    /// The file, relative to the pipeline home or absolute. Entries without one are kept
    /// but not read.
    #[must_use]
    pub fn path(self) -> Option<&'a str> {
        self.str("path")
    }
    #[must_use]
    pub fn remote(self) -> Option<&'a str> {
        self.str("remote")
    }
    /// The entry's status; a missing one counts as pending.
    #[must_use]
    pub fn status(self) -> UploadStatus {
        UploadStatus::parse(self.str("status"))
    }
    #[must_use]
    pub fn attempts(self) -> u64 {
        self.0.get("attempts").and_then(Value::as_u64).unwrap_or(0)
    }
    #[must_use]
    pub fn next_attempt_at(self) -> Option<SystemTime> {
        self.str("next_attempt_at").and_then(parse_time)
    }
    /// When the file last went up.
    #[must_use]
    pub fn uploaded_at(self) -> Option<SystemTime> {
        self.str("uploaded_at").and_then(parse_time)
    }
    /// Whether a version of the file is on the remote: it went up (`uploaded_at`), and not
    /// before its last removal from there (`removed_at`). An entry queued again since
    /// (changed, waiting for `min_interval` or its backoff) still has that version there.
    #[must_use]
    pub fn has_remote_copy(self) -> bool {
        if self.str("uploaded_at").is_none() {
            return false;
        }
        match self.str("removed_at") {
            None => true,
            Some(removed) => self
                .uploaded_at()
                .zip(parse_time(removed))
                .is_some_and(|(up, removed)| up > removed),
        }
    }
    /// Whether the file's `stat` differs from the size and mtime recorded at its upload
    /// (a record without them counts as different).
    #[must_use]
    pub fn changed_since_upload(self, stat: &Stat) -> bool {
        let size = self.0.get("size").and_then(Value::as_u64);
        let mtime_ns = self.0.get("mtime_ns").and_then(super::exact_integer);
        size != Some(stat.size) || mtime_ns != Some(stat.mtime_ns)
    }
}

impl DocView for UploadLog {
    fn wrap(doc: ListDoc) -> Self {
        UploadLog { doc }
    }
    fn doc(&self) -> &ListDoc {
        &self.doc
    }
}

impl UploadLog {
    pub fn load(path: &Path) -> Result<UploadLog> {
        Ok(UploadLog {
            doc: ListDoc::load(path, "uploads")?,
        })
    }

    /// Every entry that is an object.
    pub fn entries(&self) -> impl Iterator<Item = UploadView<'_>> {
        self.doc
            .items()
            .iter()
            .filter_map(Value::as_object)
            .map(UploadView)
    }

    /// The paths more than one entry names. Every writer finds an entry by its path, so
    /// a result or a refusal would land on the first of them whichever was meant; none
    /// of them is acted on until a person keeps one (issue 20), as with task ids.
    #[must_use]
    pub fn duplicate_paths(&self) -> HashSet<&str> {
        let mut seen = HashSet::new();
        self.entries()
            .filter_map(UploadView::path)
            .filter(|path| !seen.insert(*path))
            .collect()
    }

    /// What makes entries unusable, one sentence per path named more than once.
    #[must_use]
    pub fn malformed(&self) -> Vec<String> {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for path in self.entries().filter_map(UploadView::path) {
            *counts.entry(path).or_default() += 1;
        }
        counts
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|(path, n)| {
                format!(
                    "path {:?} is named by {n} entries: keep one; none of them is uploaded until then",
                    path.escape_debug().to_string()
                )
            })
            .collect()
    }

    #[must_use]
    pub fn get(&self, path: &str) -> Option<UploadView<'_>> {
        self.doc.find("path", path).map(UploadView)
    }

    /// Sets `fields` on the entry for `path`, or appends one.
    pub fn upsert(&mut self, path: &str, fields: Map<String, Value>) {
        self.doc.upsert("path", path, fields);
    }

    /// Locked read-modify-write (see [`ListDoc::update`]).
    pub fn update<T>(file: &Path, change: impl FnOnce(&mut UploadLog) -> Edit<T>) -> Result<T> {
        ListDoc::update(file, "uploads", change)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::UploadView;

    fn copy(entry: &Value) -> bool {
        UploadView(entry.as_object().unwrap()).has_remote_copy()
    }

    #[test]
    fn a_remote_copy_is_one_that_went_up_after_its_last_removal() {
        let (early, late) = ("2026-11-26T11:00:00Z", "2026-11-26T12:00:00Z");
        assert!(!copy(&json!({"status": "pending"})), "never went up");
        assert!(copy(&json!({"status": "pending", "uploaded_at": early})));
        assert!(
            copy(&json!({"status": "pending", "uploaded_at": "garbled"})),
            "it went up, whenever that was"
        );
        assert!(
            !copy(&json!({"status": "pending", "uploaded_at": early, "removed_at": late})),
            "back after its removal, not up since"
        );
        assert!(copy(
            &json!({"status": "pending", "uploaded_at": late, "removed_at": early})
        ));
    }
}
