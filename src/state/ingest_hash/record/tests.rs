//! Unit tests of `record`: reading and writing records.

use super::*;

fn round(text: &str) -> String {
    let raw: Box<RawValue> = serde_json::from_str(text).unwrap();
    let mut out = Vec::new();
    Record::from_raw(&raw).write(&mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn memscheds_own_records_are_typed_and_written_back_the_same() {
    let hash = format!("sha256:{}", "ab".repeat(32));
    let text = format!(
        r#"{{"hash": "{hash}", "size": 3, "mtime_ns": "-5", "inode": 9, "ingested_at": "2026-11-26T03:39:36.115Z"}}"#
    );
    let raw: Box<RawValue> = serde_json::from_str(&text).unwrap();
    let rec = Record::from_raw(&raw);
    assert!(rec.extra.is_none(), "{rec:?}");
    assert_eq!(rec.hash_text().unwrap(), hash);
    assert_eq!(rec.stat().unwrap().mtime_ns, -5);
    assert_eq!(round(&text), text);
    // The number form older memsched wrote is read, and written as memsched's own.
    let older = text.replace(r#""-5""#, "-5");
    assert_eq!(round(&older), text);
    // The change time is typed too; a record without one (older memsched) has none.
    assert_eq!(rec.stat().unwrap().ctime_ns, None);
    let with_ctime = text.replace(r#""inode": 9"#, r#""inode": 9, "ctime_ns": "17""#);
    let raw: Box<RawValue> = serde_json::from_str(&with_ctime).unwrap();
    let rec = Record::from_raw(&raw);
    assert!(rec.extra.is_none(), "{rec:?}");
    assert_eq!(rec.stat().unwrap().ctime_ns, Some(17));
    assert_eq!(round(&with_ctime), with_ctime);
}

#[test]
fn everything_else_is_kept_as_written() {
    for text in [
        r#"{"hash": "sha256:AB", "size": 1e2, "mtime_ns": 12345678901234567890123, "chunks": [1, {"x": 1.50}], "ingested_at": "2026-11-26T03:39:36+00:00"}"#,
        r#""sha256:not hex""#,
        r"[1, 2]",
        r"12345678901234567890123",
        r#"{"size": 1, "mtime_ns": 2}"#,
    ] {
        let back = round(text);
        let a: serde_json::Value = serde_json::from_str(text).unwrap();
        let b: serde_json::Value = serde_json::from_str(&back).unwrap();
        assert_eq!(a, b, "{text} became {back}");
        for piece in ["1e2", "12345678901234567890123", "1.50", "+00:00"] {
            assert_eq!(
                text.contains(piece),
                back.contains(piece),
                "{piece} in {back}"
            );
        }
    }
}

#[test]
fn setting_a_record_keeps_other_fields_and_replaces_known_ones() {
    let raw: Box<RawValue> =
        serde_json::from_str(r#"{"hash": "sha256:ab", "chunks": 7, "size": "big"}"#).unwrap();
    let mut rec = Record::from_raw(&raw);
    let stat = Stat {
        size: 1,
        mtime_ns: 2,
        inode: 3,
        ctime_ns: Some(4),
    };
    rec.set(Ok(Digest([0; 32])), stat, Ok(0));
    let mut out = Vec::new();
    rec.write(&mut out);
    let back: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(back["chunks"], 7);
    assert_eq!(back["size"], 1);
    assert_eq!(back["ingested_at"], "1970-01-01T00:00:00.000Z");
    assert_eq!(back["ctime_ns"], "4");
    assert_eq!(back.as_object().unwrap().len(), 7, "{back}");
}

#[test]
fn integers_and_plain_strings_are_read_exactly_or_not_at_all() {
    // (text, what `integer` reads)
    let integers = [
        ("0", Some(0)),
        ("-5", Some(-5)),
        ("1764129576115000000", Some(1_764_129_576_115_000_000)),
        ("170141183460469231731687303715884105727", Some(i128::MAX)),
        ("-170141183460469231731687303715884105728", Some(i128::MIN)),
        ("170141183460469231731687303715884105728", None),
        ("", None),
        ("-", None),
        ("1.5", None),
        ("1e3", None),
        ("+1", None),
        (" 1", None),
    ];
    for (text, want) in integers {
        assert_eq!(integer(text), want, "{text:?}");
    }
    // (text, what `plain_string` reads)
    let strings = [
        (r#""abc""#, Some("abc")),
        (r#""""#, Some("")),
        (r#""a\"b""#, None),
        (r#""a\\b""#, None),
        ("abc", None),
        (r#""é""#, Some("é")),
    ];
    for (text, want) in strings {
        assert_eq!(plain_string(text), want, "{text:?}");
    }
}
