//! ingest_hash.json: what has been ingested. `{"version": 1, "files": {key: record}}`, where
//! key is the path relative to data_dir (see [`crate::file_key`]) and a record holds the
//! content `hash` plus `size`, `mtime_ns` and `inode`, the stat cache that spares unchanged
//! files a re-hash. Only memsched writes it, under `ingest.lock`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use super::json_file;
use super::stat::Stat;
use crate::error::{Error, Result};

/// One file's record as read.
#[derive(Debug, Clone, Copy)]
pub struct Recorded<'a> {
    pub hash: &'a str,
    pub stat: Option<Stat>,
}

#[derive(Debug, Clone)]
pub struct IngestHash {
    path: PathBuf,
    root: Value,
}

impl IngestHash {
    /// Loads the file; a missing file is an empty record.
    pub fn load(path: &Path) -> Result<IngestHash> {
        let root = json_file::read(path)?.unwrap_or_else(|| json!({"version": 1, "files": {}}));
        let shape_ok = match &root {
            Value::Object(map) => matches!(map.get("files"), None | Some(Value::Object(_))),
            _ => false,
        };
        if !shape_ok {
            return Err(Error::StateShape {
                path: path.to_path_buf(),
                msg: "expected an object with a \"files\" object".to_owned(),
            });
        }
        Ok(IngestHash {
            path: path.to_path_buf(),
            root,
        })
    }

    fn files(&self) -> Option<&Map<String, Value>> {
        self.root.get("files").and_then(Value::as_object)
    }

    fn files_mut(&mut self) -> &mut Map<String, Value> {
        self.root
            .as_object_mut()
            .expect("load checked the root is an object")
            .entry("files")
            .or_insert_with(|| Value::Object(Map::new()))
            .as_object_mut()
            .expect("load checked \"files\" is an object")
    }

    /// The record of `key`. A record that is a bare string is taken as the hash alone.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<Recorded<'_>> {
        match self.files()?.get(key)? {
            Value::String(hash) => Some(Recorded { hash, stat: None }),
            Value::Object(rec) => {
                let hash = rec.get("hash")?.as_str()?;
                let stat = (|| {
                    Some(Stat {
                        size: rec.get("size")?.as_u64()?,
                        mtime_ns: rec.get("mtime_ns")?.as_i64()?,
                        inode: rec.get("inode")?.as_u64()?,
                    })
                })();
                Some(Recorded { hash, stat })
            }
            _ => None,
        }
    }

    /// Every recorded key.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.files()
            .into_iter()
            .flat_map(|f| f.keys().map(String::as_str))
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.files().map_or(0, Map::len)
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Hash → one key recorded with it; built only when some file needed hashing.
    #[must_use]
    pub fn by_hash(&self) -> HashMap<String, String> {
        self.keys()
            .filter_map(|k| Some((self.get(k)?.hash.to_owned(), k.to_owned())))
            .collect()
    }

    /// Records `key` as ingested with `hash` and `stat`; other fields of its record stay.
    pub fn record(&mut self, key: &str, hash: &str, stat: Stat, now: &str) {
        let entry = self
            .files_mut()
            .entry(key)
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        let rec = entry.as_object_mut().expect("made an object just above");
        rec.insert("hash".to_owned(), Value::from(hash));
        rec.insert("size".to_owned(), Value::from(stat.size));
        rec.insert("mtime_ns".to_owned(), Value::from(stat.mtime_ns));
        rec.insert("inode".to_owned(), Value::from(stat.inode));
        rec.insert("ingested_at".to_owned(), Value::from(now));
    }

    pub fn save(&self) -> Result<()> {
        json_file::write(&self.path, &self.root)
    }
}
