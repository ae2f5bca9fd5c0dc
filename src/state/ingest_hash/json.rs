//! Reading and writing ingest_hash.json itself: `{"version": 1, "files": {key: record}}`,
//! read straight into typed records (no generic JSON tree of 100,000 objects on the way),
//! and written one record per line with every other top-level field as it was read.

use std::fmt;
use std::io::Read;
use std::path::Path;

use serde::Deserializer as _;
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::record::{Name, Record, push_str};
use crate::error::{Error, Result, json_message};
use crate::os::lock;

pub(super) use super::files::Files;

/// A top-level field: its name and raw value, or `None` for the place of `files`.
pub(super) type Top = Vec<(Box<str>, Option<Box<RawValue>>)>;

/// The bytes of ingest_hash.json and its metadata, read without following a link there
/// (issue 10); `None` when it does not exist.
pub(super) fn read(path: &Path) -> Result<Option<(Vec<u8>, std::fs::Metadata)>> {
    let opened = crate::os::regular_file::open(path, crate::os::regular_file::options().read(true))
        .and_then(|mut file| {
            let meta = file.metadata()?;
            let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
            file.read_to_end(&mut bytes)?;
            Ok((bytes, meta))
        });
    match opened {
        Ok(read) => Ok(Some(read)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) if lock::is_link_refusal(&e) => Err(Error::Link {
            path: path.to_path_buf(),
            what: "state file",
        }),
        Err(source) => Err(Error::StateRead {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The document of a new file.
pub(super) fn new_top() -> Top {
    vec![
        (
            "version".into(),
            Some(RawValue::from_string("1".to_owned()).expect("1 is JSON")),
        ),
        ("files".into(), None),
    ]
}

/// Parses the bytes of ingest_hash.json.
pub(super) fn parse(path: &Path, bytes: &[u8]) -> Result<(Top, Files)> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = de
        .deserialize_map(DocVisitor {
            // memsched writes about 180 bytes a record: reserving for them up front spares
            // the table its rehashes as it grows.
            expected: bytes.len() / 180,
        })
        .and_then(|doc| de.end().map(|()| doc));
    parsed.map_err(|typed| {
        // The typed read stops at the first surprise; a second, plain read tells a file
        // that is not JSON (line and column) from JSON of the wrong shape.
        match serde_json::from_slice::<IgnoredAny>(bytes) {
            Err(e) => Error::StateParse {
                path: path.to_path_buf(),
                line: e.line(),
                col: e.column(),
                msg: json_message(&e),
            },
            Ok(_) => Error::StateShape {
                path: path.to_path_buf(),
                msg: format!(
                    "expected an object with a \"files\" object ({})",
                    json_message(&typed)
                ),
            },
        }
    })
}

struct DocVisitor {
    expected: usize,
}

impl<'de> Visitor<'de> for DocVisitor {
    type Value = (Top, Files);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object with a \"files\" object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut top: Top = Vec::new();
        let mut files = Files::default();
        while let Some(key) = map.next_key::<String>()? {
            if key == "files" {
                files = map.next_value_seed(FilesSeed {
                    expected: self.expected,
                })?;
                if !top.iter().any(|(_, v)| v.is_none()) {
                    top.push((key.into_boxed_str(), None));
                }
            } else {
                let value = map.next_value::<Box<RawValue>>()?;
                match top.iter_mut().find(|(k, _)| **k == *key) {
                    Some(slot) => slot.1 = Some(value),
                    None => top.push((key.into_boxed_str(), Some(value))),
                }
            }
        }
        Ok((top, files))
    }
}

struct FilesSeed {
    expected: usize,
}

impl<'de> DeserializeSeed<'de> for FilesSeed {
    type Value = Files;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Files, D::Error> {
        d.deserialize_map(FilesVisitor {
            expected: self.expected,
        })
    }
}

struct FilesVisitor {
    expected: usize,
}

impl<'de> Visitor<'de> for FilesVisitor {
    type Value = Files;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a \"files\" object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Files, A::Error> {
        let mut files = Files::with_capacity(map.size_hint().unwrap_or(self.expected));
        while let Some(Name(key)) = map.next_key::<Name<'de>>()? {
            let raw = map.next_value::<&'de RawValue>()?;
            files.insert(&key, Record::from_raw(raw));
        }
        files.shrink_to_fit();
        Ok(files)
    }
}

/// The whole file: the top-level fields in their order, `files` one record per line in
/// key order (diffs and `grep` stay readable at 100,000 files).
pub(super) fn write(top: &Top, files: &Files) -> Vec<u8> {
    let mut keys: Vec<(&str, &Record)> = files.iter().collect();
    keys.sort_unstable_by_key(|(k, _)| *k);
    let mut out = Vec::with_capacity(keys.len() * 200 + 64);
    out.extend_from_slice(b"{");
    let mut wrote_files = false;
    let mut first = true;
    let put_files = |out: &mut Vec<u8>| {
        out.extend_from_slice(b"{");
        for (i, (key, rec)) in keys.iter().enumerate() {
            out.extend_from_slice(if i == 0 { b"\n    " } else { b",\n    " });
            push_str(out, key);
            out.extend_from_slice(b": ");
            rec.write(out);
        }
        out.extend_from_slice(if keys.is_empty() { b"}" } else { b"\n  }" });
    };
    for (name, value) in top {
        out.extend_from_slice(if first { b"\n  " } else { b",\n  " });
        first = false;
        push_str(&mut out, name);
        out.extend_from_slice(b": ");
        match value {
            Some(raw) => out.extend_from_slice(raw.get().as_bytes()),
            None => {
                put_files(&mut out);
                wrote_files = true;
            }
        }
    }
    if !wrote_files {
        out.extend_from_slice(if first { b"\n  " } else { b",\n  " });
        push_str(&mut out, "files");
        out.extend_from_slice(b": ");
        put_files(&mut out);
    }
    out.extend_from_slice(b"\n}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn top_level_fields_and_records_survive_a_round_trip() {
        let text = r#"{"note": {"kept": 1.50}, "files": {"b.txt": "sha256:x", "a.txt": {"chunks": 7}}, "version": 1}"#;
        let (top, files) = parse(Path::new("h.json"), text.as_bytes()).unwrap();
        let out = write(&top, &files);
        let back: Value = serde_json::from_slice(&out).unwrap();
        let want: Value = serde_json::from_str(text).unwrap();
        assert_eq!(back, want);
        let out = String::from_utf8(out).unwrap();
        assert!(out.contains("1.50"), "{out}");
        assert!(out.find("\"note\"") < out.find("\"version\""), "{out}");
    }

    #[test]
    fn wrong_shapes_and_broken_json_are_told_apart() {
        let path = Path::new("h.json");
        for shape in ["[]", "3", r#"{"files": []}"#, r#"{"files": null}"#] {
            let e = parse(path, shape.as_bytes()).unwrap_err();
            assert!(matches!(e, Error::StateShape { .. }), "{shape}: {e}");
        }
        let e = parse(path, b"{\n \"files\": {\"a\": {,}}}").unwrap_err();
        assert!(matches!(e, Error::StateParse { line: 2, .. }), "{e}");
        assert!(parse(path, b"{}").unwrap().1.is_empty());
        assert_eq!(
            serde_json::from_slice::<Value>(&write(&new_top(), &Files::default())).unwrap(),
            json!({"version": 1, "files": {}})
        );
    }
}
