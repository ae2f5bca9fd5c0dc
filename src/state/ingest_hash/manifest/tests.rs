//! Unit tests of `manifest`: loading, recording, the journal and compaction.

use super::*;
use std::time::Duration;

fn stat(n: u64) -> Stat {
    Stat {
        size: n,
        mtime_ns: 1,
        inode: n,
        ctime_ns: Some(2),
    }
}

#[test]
fn records_reach_the_journal_then_the_json_and_survive_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ingest_hash.json");
    let at =
        crate::state::timestamp(SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_000_000_123));
    let mut h = IngestHash::load(&path).unwrap();
    h.record("a.txt", &Digest([1; 32]), stat(1), &at);
    h.flush().unwrap();
    assert!(!path.exists(), "one file must not rewrite the manifest");
    let back = IngestHash::load(&path).unwrap();
    assert_eq!(back.get("a.txt").unwrap().hash(), Some(Digest([1; 32])));
    assert_eq!(back.get("a.txt").unwrap().stat(), Some(stat(1)));

    h.save().unwrap();
    assert!(!journal::path_for(&path).exists());
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(
        doc["files"]["a.txt"]["ingested_at"],
        "2026-11-18T11:06:40.123Z"
    );
    assert_eq!(doc["files"]["a.txt"]["hash"], Digest([1; 32]).text());
}

#[test]
fn a_gone_mark_and_a_removal_reach_the_journal_then_the_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ingest_hash.json");
    let mut h = IngestHash::load(&path).unwrap();
    for (i, key) in ["a.txt", "b.txt", "c.txt", "d.txt"].iter().enumerate() {
        let n = u8::try_from(i).unwrap();
        h.record(
            key,
            &Digest([n; 32]),
            stat(u64::from(n)),
            "2026-12-01T00:00:00Z",
        );
    }
    h.mark_gone("a.txt", "2026-12-02T00:00:00Z");
    h.mark_gone("a.txt", "2026-12-03T00:00:00Z");
    h.mark_gone("b.txt", "2026-12-02T00:00:00Z");
    h.remove("b.txt", "2026-12-02T00:00:01Z");
    h.mark_gone("c.txt", "2026-12-02T00:00:00Z");
    // c.txt came back and was recorded again: no longer a pending removal.
    h.record("c.txt", &Digest([9; 32]), stat(9), "2026-12-02T00:00:02Z");
    h.flush().unwrap();
    for back in [IngestHash::load(&path).unwrap(), {
        h.save().unwrap();
        IngestHash::load(&path).unwrap()
    }] {
        assert_eq!(
            back.get("a.txt").unwrap().gone_at().as_deref(),
            Some("2026-12-02T00:00:00Z"),
            "the first time it was found gone stays"
        );
        assert!(back.get("b.txt").is_none());
        assert_eq!(back.get("c.txt").unwrap().gone_at(), None);
        assert_eq!(back.get("d.txt").unwrap().hash(), Some(Digest([3; 32])));
        assert_eq!(back.len(), 3);
    }
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(doc["files"]["a.txt"]["gone_at"], "2026-12-02T00:00:00Z");
}

#[test]
fn a_journal_past_its_limit_asks_to_be_folded_in() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ingest_hash.json");
    let mut h = IngestHash::load(&path).unwrap();
    let mut n = 0;
    while !h.journal_is_large() {
        h.record(&format!("notes/{n}.txt"), &Digest([3; 32]), stat(n), "x");
        h.flush().unwrap();
        n += 1;
        assert!(n < 10_000, "the journal never counts as large");
    }
    assert!(n > 1000, "one file's line must not count as large ({n})");
    h.save().unwrap();
    assert!(!h.has_journal());
    assert_eq!(
        IngestHash::load(&path).unwrap().len(),
        usize::try_from(n).unwrap()
    );
}

#[test]
fn a_held_manifest_sees_other_writers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ingest_hash.json");
    let mut held = IngestHash::load(&path).unwrap();
    // Another process appends to the journal…
    let mut other = IngestHash::load(&path).unwrap();
    other.record(
        "b.txt",
        &Digest([2; 32]),
        stat(2),
        "1970-01-01T00:00:00.000Z",
    );
    other.flush().unwrap();
    held.refresh().unwrap();
    assert!(held.get("b.txt").is_some());
    // …then compacts and a script replaces the file.
    other.save().unwrap();
    std::fs::write(&path, r#"{"files": {"c.txt": "sha256:x"}}"#).unwrap();
    held.refresh().unwrap();
    assert!(held.get("b.txt").is_none());
    assert!(held.get("c.txt").is_some());
}
