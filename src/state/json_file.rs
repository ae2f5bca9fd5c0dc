//! Strict reads and atomic writes of JSON state files, and list documents whose shape
//! (an object holding a list, or a bare list) survives every rewrite.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};

use crate::config::paths::Paths;
use crate::error::{Error, Result, json_message};
use crate::os::lock;

/// How long a writer of a shared state file waits for another writer to finish.
const LOCK_PATIENCE: Duration = Duration::from_secs(30);

/// Reads a JSON file: `None` when it does not exist, an error naming line and column when
/// it does not parse (including an empty file: a writer may be half way through).
pub fn read(path: &Path) -> Result<Option<Value>> {
    let bytes = match read_no_link(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if lock::is_link_refusal(&e) => {
            return Err(Error::Link {
                path: path.to_path_buf(),
                what: "state file",
            });
        }
        Err(source) => {
            return Err(Error::StateRead {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| Error::StateParse {
            path: path.to_path_buf(),
            line: e.line(),
            col: e.column(),
            msg: json_message(&e),
        })
}

/// The bytes of `path`, refusing a link there (issue 10: a state file is never read or
/// written through a link).
fn read_no_link(path: &Path) -> std::io::Result<Vec<u8>> {
    crate::os::regular_file::read(path)
}

/// Writes `value` pretty-printed, atomically.
pub fn write(path: &Path, value: &Value) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value).expect("a JSON value always serialises");
    bytes.push(b'\n');
    super::atomic::write(path, &bytes).map_err(|source| write_error(path, source))
}

/// A failed write of a state file: a link refused, the disk full, or another error.
pub(crate) fn write_error(path: &Path, source: std::io::Error) -> Error {
    if lock::is_link_refusal(&source) {
        Error::Link {
            path: path.to_path_buf(),
            what: "state file",
        }
    } else {
        Error::state_write(path, source)
    }
}

/// A state document whose payload is a list: either `{"<key>": [...], ...}` or a bare
/// `[...]`. Everything else in the document is kept as it was read.
/// The entries of a list document: a bare list, or the list under `key` (none when the
/// document is neither).
#[must_use]
pub fn list_items<'a>(root: &'a Value, key: &str) -> &'a [Value] {
    match root {
        Value::Array(items) => items,
        Value::Object(map) => map
            .get(key)
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice),
        _ => &[],
    }
}

#[derive(Debug, Clone)]
pub struct ListDoc {
    path: PathBuf,
    key: &'static str,
    root: Value,
}

impl ListDoc {
    /// Loads the document; a missing file is an empty `{"<key>": []}`.
    pub fn load(path: &Path, key: &'static str) -> Result<ListDoc> {
        let root = read(path)?.unwrap_or_else(|| serde_json::json!({ key: [] }));
        let shape_error = |msg: String| Error::StateShape {
            path: path.to_path_buf(),
            msg,
        };
        match &root {
            Value::Array(_) => {}
            Value::Object(map) => match map.get(key) {
                None | Some(Value::Array(_)) => {}
                Some(_) => return Err(shape_error(format!("\"{key}\" is not a list"))),
            },
            _ => {
                return Err(shape_error(format!(
                    "expected an object with \"{key}\" or a list"
                )));
            }
        }
        Ok(ListDoc {
            path: path.to_path_buf(),
            key,
            root,
        })
    }

    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    #[must_use]
    pub fn items(&self) -> &[Value] {
        list_items(&self.root, self.key)
    }

    pub fn items_mut(&mut self) -> &mut Vec<Value> {
        let key = self.key;
        match &mut self.root {
            Value::Array(items) => items,
            Value::Object(map) => map
                .entry(key)
                .or_insert_with(|| Value::Array(Vec::new()))
                .as_array_mut()
                .expect("load checked that the key holds a list"),
            _ => unreachable!("load accepts only objects and lists"),
        }
    }

    /// Writes the document back atomically, in the shape it was read.
    pub fn save(&self) -> Result<()> {
        write(&self.path, &self.root)
    }

    /// The first item whose `field` is the string `value`.
    #[must_use]
    pub fn find(&self, field: &str, value: &str) -> Option<&Map<String, Value>> {
        self.items()
            .iter()
            .filter_map(Value::as_object)
            .find(|item| item.get(field).and_then(Value::as_str) == Some(value))
    }

    /// Sets `fields` on the first item whose `field` is `value` (its other fields kept),
    /// or appends a new item `{field: value, ..fields}`.
    pub fn upsert(&mut self, field: &str, value: &str, fields: Map<String, Value>) {
        let items = self.items_mut();
        let existing = items
            .iter_mut()
            .filter_map(Value::as_object_mut)
            .find(|item| item.get(field).and_then(Value::as_str) == Some(value));
        match existing {
            Some(item) => item.extend(fields),
            None => {
                let mut item = Map::new();
                item.insert(field.to_owned(), Value::from(value));
                item.extend(fields);
                items.push(Value::Object(item));
            }
        }
    }

    /// Locked read-modify-write of a shared document: takes `<file>.lock`, re-reads the
    /// file, applies `change`, and writes it back when `change` says it changed something.
    /// Writers that follow this protocol never lose each other's changes.
    pub fn update<W: DocView, T>(
        path: &Path,
        key: &'static str,
        change: impl FnOnce(&mut W) -> Edit<T>,
    ) -> Result<T> {
        let _guard = lock::acquire_within(&Paths::file_lock(path), LOCK_PATIENCE)?;
        let mut view = W::wrap(ListDoc::load(path, key)?);
        let (changed, value) = change(&mut view).split();
        if changed {
            view.doc().save()?;
        }
        Ok(value)
    }
}

/// What a change given to a locked read-modify-write hands back: whether it changed the
/// document (so the file is written back) and the value its caller gets.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edit<T> {
    /// The document changed: write it back.
    Changed(T),
    /// Nothing changed: the file stays as it is.
    Unchanged(T),
}

impl<T> Edit<T> {
    /// [`Edit::Changed`] when `changed`, else [`Edit::Unchanged`].
    pub fn changed_if(changed: bool, value: T) -> Edit<T> {
        if changed {
            Edit::Changed(value)
        } else {
            Edit::Unchanged(value)
        }
    }

    /// Whether to write back, and the value.
    pub fn split(self) -> (bool, T) {
        match self {
            Edit::Changed(value) => (true, value),
            Edit::Unchanged(value) => (false, value),
        }
    }
}

/// A typed view over a list document (the task queue, the upload log), so the one locked
/// read-modify-write in [`ListDoc::update`] can hand it out.
pub trait DocView {
    fn wrap(doc: ListDoc) -> Self;
    fn doc(&self) -> &ListDoc;
}

impl DocView for ListDoc {
    fn wrap(doc: ListDoc) -> Self {
        doc
    }
    fn doc(&self) -> &ListDoc {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bare_lists_stay_bare_and_unknown_fields_survive() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.json");
        std::fs::write(&path, r#"[{"id": "a", "extra": {"x": 1}}]"#).unwrap();
        let mut doc = ListDoc::load(&path, "tasks").unwrap();
        doc.items_mut().push(json!({"id": "b"}));
        doc.save().unwrap();
        let back: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(back, json!([{"id": "a", "extra": {"x": 1}}, {"id": "b"}]));
    }

    #[test]
    fn objects_keep_their_other_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.json");
        std::fs::write(&path, r#"{"version": 3, "owner": "me", "tasks": []}"#).unwrap();
        let mut doc = ListDoc::load(&path, "tasks").unwrap();
        doc.items_mut().push(json!({"id": "b"}));
        doc.save().unwrap();
        let back: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(
            back,
            json!({"version": 3, "owner": "me", "tasks": [{"id": "b"}]})
        );
    }

    #[test]
    fn malformed_files_report_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.json");
        std::fs::write(&path, "{\n  \"tasks\": [,]\n}").unwrap();
        let e = ListDoc::load(&path, "tasks").unwrap_err();
        assert!(e.to_string().contains("q.json:2:13:"), "{e}");
        std::fs::write(&path, "{\"tasks\": 3}").unwrap();
        assert!(
            ListDoc::load(&path, "tasks")
                .unwrap_err()
                .to_string()
                .contains("not a list")
        );
    }
}
