//! Property tests (issue 10) for every parser a hostile file reaches: paths.json,
//! watch-rules.toml and each state file. Any input gives a value or an error, never a
//! panic; a write then a read of a state file keeps every field memsched does not know.
//! Case counts are bounded (64 per property) so CI stays fast.

use std::path::Path;

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use memsched::config::paths::Paths;
use memsched::config::rules::Rules;
use memsched::state::ingest_hash::IngestHash;
use memsched::state::json_file::{Edit, ListDoc};
use memsched::state::stat::Stat;
use memsched::state::task_queue::TaskQueue;
use memsched::state::upload_log::UploadLog;

const CASES: u32 = 64;

/// JSON number texts, including ones no f64 or u64 holds exactly.
fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        "-?[1-9][0-9]{18,30}",
        "-?[0-9]\\.[0-9]{1,25}",
        "-?[1-9](\\.[0-9]{1,5})?[eE][-+]?[0-9]{1,3}",
    ]
    .prop_map(|text| serde_json::from_str(&text).expect("a JSON number"))
}

/// Any JSON value, a few levels deep.
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        number(),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Fields no state file format defines (`x_` keeps them apart from the known ones).
fn unknown_fields() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map("x_[a-z0-9_]{1,8}", value(), 0..5)
        .prop_map(|m| m.into_iter().collect())
}

/// Text that is often JSON-like, sometimes garbage.
fn json_text() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        value().prop_map(|v| serde_json::to_vec(&v).expect("serialises")),
        prop::collection::vec(any::<u8>(), 0..64),
        "[\\[\\]{}\",:0-9a-z. \\\\u-]{0,48}".prop_map(String::into_bytes),
    ]
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// A line of watch-rules.toml with a key memsched knows and a value of any shape.
fn rules_text() -> impl Strategy<Value = String> {
    let key = prop::sample::select(vec![
        "debounce",
        "max_wait",
        "tick",
        "log_keep",
        "pause_file",
    ]);
    let scalar = prop_oneof![
        "\"[0-9]{1,20}(ns|ms|s|m|h|d|w|y|M)\"",
        "-?[0-9]{1,20}",
        "\"[^\"\\\\]{0,8}\"",
        "[0-9]\\.[0-9]e[0-9]{1,3}",
    ];
    let section = prop::sample::select(vec![
        "",
        "[actions.ingest]\ncommand = [\"i\", \"{files}\"]\n",
        "[actions.retry]\ncommand = [\"r\"]\n",
        "[actions.upload]\ncommand = [\"u\", \"{path}\"]\n",
    ]);
    let table_key = prop::sample::select(vec![
        "timeout",
        "settle",
        "batch_size",
        "parallel",
        "max_attempts",
        "stuck_after",
        "backoff.initial",
        "backoff.max",
        "backoff.factor",
        "breaker.cooldown",
        "breaker.failures",
    ]);
    prop_oneof![
        (key, scalar.clone()).prop_map(|(k, v)| format!("{k} = {v}\n")),
        (section, table_key, scalar).prop_map(|(s, k, v)| format!("{s}{k} = {v}\n")),
        ".{0,64}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn paths_json_of_any_content_loads_or_errs(bytes in json_text()) {
        let dir = tempfile::tempdir().unwrap();
        let _ = Paths::load(&write(dir.path(), "paths.json", &bytes));
    }

    #[test]
    fn rules_of_any_content_load_or_err(text in rules_text()) {
        let _ = Rules::parse(Path::new("watch-rules.toml"), &text);
    }

    #[test]
    fn state_files_of_any_content_load_or_err(bytes in json_text()) {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "state.json", &bytes);
        if let Ok(queue) = TaskQueue::load(&path) {
            for t in queue.tasks() {
                let _ = (t.id(), t.status(), t.updated_at());
            }
        }
        if let Ok(log) = UploadLog::load(&path) {
            for e in log.entries() {
                let _ = (e.path(), e.remote(), e.status(), e.attempts(), e.next_attempt_at());
            }
        }
        if let Ok(hashes) = IngestHash::load(&path) {
            for key in hashes.keys() {
                let _ = hashes.get(key);
            }
        }
    }

    #[test]
    fn a_task_queue_rewrite_keeps_every_unknown_field(
        top in unknown_fields(),
        task in unknown_fields(),
        other in value(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut doc = top.clone();
        let mut first = task.clone();
        first.insert("id".into(), "t1".into());
        doc.insert("tasks".into(), json!([Value::Object(first), other.clone()]));
        let path = write(dir.path(), "task_queue.json", &serde_json::to_vec(&doc).unwrap());
        ListDoc::update::<TaskQueue, _>(&path, "tasks", |q| {
            let mut fields = Map::new();
            fields.insert("status".into(), "done".into());
            q.upsert("t1", fields);
            Edit::Changed(())
        })
        .unwrap();
        let back: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        for (k, v) in &top {
            prop_assert_eq!(&back[k], v);
        }
        for (k, v) in &task {
            prop_assert_eq!(&back["tasks"][0][k], v);
        }
        prop_assert_eq!(&back["tasks"][0]["status"], "done");
        prop_assert_eq!(&back["tasks"][1], &other);
    }

    #[test]
    fn an_upload_log_rewrite_keeps_every_unknown_field(entry in unknown_fields()) {
        let dir = tempfile::tempdir().unwrap();
        let mut first = entry.clone();
        first.insert("path".into(), "Data/a.txt".into());
        let path = write(
            dir.path(),
            "upload_log.json",
            &serde_json::to_vec(&json!([Value::Object(first)])).unwrap(),
        );
        UploadLog::update(&path, |log| {
            let mut fields = Map::new();
            fields.insert("status".into(), "uploaded".into());
            log.upsert("Data/a.txt", fields);
            Edit::Changed(())
        })
        .unwrap();
        let back: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        for (k, v) in &entry {
            prop_assert_eq!(&back[0][k], v);
        }
        prop_assert_eq!(&back[0]["status"], "uploaded");
    }

    #[test]
    fn an_ingest_hash_rewrite_keeps_every_unknown_field(
        top in unknown_fields(),
        record in unknown_fields(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut doc = top.clone();
        doc.insert("version".into(), 1.into());
        doc.insert("files".into(), json!({"kept.txt": Value::Object(record.clone())}));
        let path = write(dir.path(), "ingest_hash.json", &serde_json::to_vec(&doc).unwrap());
        let mut hashes = IngestHash::load(&path).unwrap();
        let stat = Stat { size: 1, mtime_ns: 2, inode: 3, ctime_ns: Some(4) };
        hashes.record("new.txt", "abc", stat, "2026-01-01T00:00:00Z");
        hashes.save().unwrap();
        let back: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        for (k, v) in &top {
            prop_assert_eq!(&back[k], v);
        }
        prop_assert_eq!(&back["files"]["kept.txt"], &Value::Object(record));
        prop_assert_eq!(&back["files"]["new.txt"]["hash"], "abc");
    }
}
