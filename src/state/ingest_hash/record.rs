//! One file's record in ingest_hash.json, held compactly: the SHA-256 as 32 bytes, the stat
//! cache and the ingest time as integers, and whatever else its JSON held (fields other
//! scripts wrote, values of an unexpected type) as the raw JSON text it was read as, so a
//! rewrite gives them back byte for byte.

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::value::RawValue;

use crate::state::stat::Stat;
use crate::state::{parse_time, timestamp};

/// The prefix of every content hash memsched writes.
const SHA256: &str = "sha256:";

/// A SHA-256 content hash, written `sha256:<64 lowercase hex digits>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// The digest `text` spells, when it is exactly the form memsched writes.
    #[must_use]
    pub fn parse(text: &str) -> Option<Digest> {
        let hex = text.strip_prefix(SHA256)?.as_bytes();
        if hex.len() != 64 {
            return None;
        }
        let mut out = [0; 32];
        for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
            *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
        }
        Some(Digest(out))
    }

    /// `sha256:<hex>`.
    #[must_use]
    pub fn text(&self) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(SHA256.len() + 64);
        out.push_str(SHA256);
        for b in self.0 {
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        out
    }
}

/// Lowercase hex only: an uppercase spelling is kept as the text it was written as.
fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// How the record's JSON looked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// An object (every record memsched writes).
    Object,
    /// A bare string: the hash alone.
    Bare,
    /// Anything else (a number, a list, null): not a record memsched can read; its raw
    /// text is the one extra field, under the empty name, and it is written back as it was.
    Raw,
}

/// Fields of a record kept as written: (name, raw JSON value). Boxed twice so a record
/// without any (nearly all) pays one pointer.
pub(crate) type Extra = Box<Vec<(Box<str>, Box<RawValue>)>>;

/// Which of a record's typed fields it holds (bits of `Record::has`).
const HASH: u8 = 1;
const STAT: u8 = 2;
const AT: u8 = 4;

/// One file's record.
#[derive(Debug, Clone)]
pub struct Record {
    digest: Digest,
    stat_: Stat,
    /// Milliseconds since 1970 of `ingested_at`, when it was in memsched's own form.
    at_ms: i64,
    /// Everything else, in the order read (None when there is nothing).
    extra: Option<Extra>,
    /// The generation of the last full walk that found this file (see `IngestHash::mark`).
    pub(super) seen: u32,
    shape: Shape,
    /// Which of `digest`, `stat_` and `at_ms` hold a value (HASH, STAT, AT).
    has: u8,
}

/// The names memsched owns in a record; everything else is extra.
/// `gone_at` (when memsched first found the file gone) is kept as written, like any
/// extra field, but a new record of the file clears it: the file is back.
pub(super) const KNOWN: [&str; 8] = [
    "hash",
    "size",
    "mtime_ns",
    "inode",
    "ctime_ns",
    "ingested_at",
    GONE_AT,
    STALE_AT,
];

/// The field that marks a record whose file memsched found gone: a pending removal.
const GONE_AT: &str = "gone_at";
/// The field that marks a record the index may no longer hold: a removal of it was sent,
/// or a send of newer content failed (the step may have dropped the old chunks first).
/// Its hash is then no proof of what is indexed.
const STALE_AT: &str = "stale_at";

impl Record {
    /// A record memsched makes.
    #[must_use]
    pub fn new(hash: Digest, stat: Stat, at: SystemTime) -> Record {
        Record {
            digest: hash,
            stat_: stat,
            at_ms: millis(at),
            extra: None,
            seen: 0,
            shape: Shape::Object,
            has: HASH | STAT | AT,
        }
    }

    /// The content hash, when the record holds one in memsched's form.
    #[must_use]
    pub fn hash(&self) -> Option<Digest> {
        (self.has & HASH != 0).then_some(self.digest)
    }

    fn ingested(&self) -> Option<i64> {
        (self.has & AT != 0).then_some(self.at_ms)
    }

    fn put_hash(&mut self, hash: Option<Digest>) {
        self.has &= !HASH;
        if let Some(d) = hash {
            self.digest = d;
            self.has |= HASH;
        }
    }

    fn put_stat(&mut self, stat: Option<Stat>) {
        self.has &= !STAT;
        if let Some(s) = stat {
            self.stat_ = s;
            self.has |= STAT;
        }
    }

    fn put_ingested(&mut self, ms: Option<i64>) {
        self.has &= !AT;
        if let Some(ms) = ms {
            self.at_ms = ms;
            self.has |= AT;
        }
    }

    /// The hash as text, whatever form it was written in.
    #[must_use]
    pub fn hash_text(&self) -> Option<String> {
        if let Some(d) = self.hash() {
            return Some(d.text());
        }
        let raw = self.extra_raw("hash")?;
        serde_json::from_str::<String>(raw.get()).ok()
    }

    /// `ingested_at` as text, whatever form it was written in.
    #[must_use]
    pub fn ingested_at_text(&self) -> Option<String> {
        if let Some(ms) = self.ingested() {
            return Some(time_text(ms));
        }
        let raw = self.extra_raw("ingested_at")?;
        serde_json::from_str::<String>(raw.get()).ok()
    }

    /// When memsched first found this record's file gone (a pending removal), as written.
    #[must_use]
    pub fn gone_at(&self) -> Option<String> {
        let raw = self.extra_raw(GONE_AT)?;
        serde_json::from_str::<String>(raw.get()).ok()
    }

    /// Marks the record's file as found gone at `at` (kept if it was marked already).
    pub(super) fn set_gone(&mut self, at: &str) {
        self.set_mark(GONE_AT, at);
    }

    /// When the index stopped being sure to hold this record's content, if it did.
    #[must_use]
    pub fn stale_at(&self) -> Option<String> {
        let raw = self.extra_raw(STALE_AT)?;
        serde_json::from_str::<String>(raw.get()).ok()
    }

    /// Marks the record as no proof of what is indexed (kept if it was marked already).
    pub(super) fn set_stale(&mut self, at: &str) {
        self.set_mark(STALE_AT, at);
    }

    /// Sets the time field `name` unless the record has it (or is not an object).
    fn set_mark(&mut self, name: &str, at: &str) {
        if self.extra_raw(name).is_some() || self.shape != Shape::Object {
            return;
        }
        let raw =
            RawValue::from_string(serde_json::to_string(at).expect("a string always serialises"))
                .expect("a serialised string is JSON");
        self.extra
            .get_or_insert_with(Box::default)
            .push((name.into(), raw));
    }

    #[must_use]
    pub fn stat(&self) -> Option<Stat> {
        (self.has & STAT != 0).then_some(self.stat_)
    }

    fn extra_raw(&self, name: &str) -> Option<&RawValue> {
        self.extra
            .as_deref()?
            .iter()
            .find(|(k, _)| &**k == name)
            .map(|(_, v)| &**v)
    }

    /// Sets what memsched records (hash, stat, time), each typed or, when not in
    /// memsched's own form, as raw JSON; fields others wrote stay. A record that was not an
    /// object becomes one.
    pub(super) fn set(
        &mut self,
        hash: Result<Digest, Box<RawValue>>,
        stat: Stat,
        at: Result<i64, Box<RawValue>>,
    ) {
        let mut extra: Vec<(Box<str>, Box<RawValue>)> = match (self.shape, self.extra.take()) {
            (Shape::Raw, _) | (_, None) => Vec::new(),
            (_, Some(e)) => *e,
        };
        extra.retain(|(k, _)| !KNOWN.contains(&&**k));
        self.put_hash(match hash {
            Ok(d) => Some(d),
            Err(raw) => {
                extra.insert(0, ("hash".into(), raw));
                None
            }
        });
        self.put_ingested(match at {
            Ok(ms) => Some(ms),
            Err(raw) => {
                extra.push(("ingested_at".into(), raw));
                None
            }
        });
        self.put_stat(Some(stat));
        self.shape = Shape::Object;
        self.extra = (!extra.is_empty()).then(|| Box::new(extra));
    }

    /// Reads a record from its raw JSON text.
    pub(super) fn from_raw(raw: &RawValue) -> Record {
        let text = raw.get();
        let mut rec = Record {
            digest: Digest([0; 32]),
            stat_: Stat::default(),
            at_ms: 0,
            extra: None,
            seen: 0,
            shape: Shape::Raw,
            has: 0,
        };
        match text.as_bytes().first() {
            Some(b'{') => {
                if let Ok(fields) = serde_json::from_str::<Fields<'_>>(text) {
                    rec.shape = Shape::Object;
                    rec.take_fields(fields.0);
                    return rec;
                }
            }
            Some(b'"') => {
                if let Some(d) = plain_string(text).and_then(Digest::parse) {
                    rec.shape = Shape::Bare;
                    rec.put_hash(Some(d));
                    return rec;
                }
                if serde_json::from_str::<String>(text).is_ok() {
                    rec.shape = Shape::Bare;
                    rec.extra = Some(Box::new(vec![("hash".into(), boxed(raw))]));
                    return rec;
                }
            }
            _ => {}
        }
        rec.extra = Some(Box::new(vec![(Box::from(""), boxed(raw))]));
        rec
    }

    fn take_fields(&mut self, fields: Vec<(Cow<'_, str>, &RawValue)>) {
        let (mut size, mut mtime, mut inode, mut ctime) = (None, None, None, None);
        let mut extra = Vec::new();
        for (name, raw) in fields {
            let text = raw.get();
            let taken = match &*name {
                "hash" => plain_string(text)
                    .and_then(Digest::parse)
                    .map(|d| self.put_hash(Some(d)))
                    .is_some(),
                "size" => integer(text).map(|n| size = Some((n, raw))).is_some(),
                // Written as a string of digits: as a number it exceeds what jq and
                // JavaScript hold exactly (issue 10 item 6). Either form is read.
                "mtime_ns" => integer(text)
                    .or_else(|| plain_string(text).and_then(integer))
                    .map(|n| mtime = Some((n, raw)))
                    .is_some(),
                "inode" => integer(text).map(|n| inode = Some((n, raw))).is_some(),
                // Written as mtime_ns is; absent from records older memsched wrote.
                "ctime_ns" => integer(text)
                    .or_else(|| plain_string(text).and_then(integer))
                    .map(|n| ctime = Some((n, raw)))
                    .is_some(),
                "ingested_at" => plain_string(text)
                    .and_then(own_time)
                    .map(|ms| self.put_ingested(Some(ms)))
                    .is_some(),
                _ => false,
            };
            if !taken {
                extra.push((name.into(), boxed(raw)));
            }
        }
        let stat = match (size, mtime, inode) {
            (Some((s, _)), Some((m, _)), Some((i, _))) => (|| {
                Some(Stat {
                    size: u64::try_from(s).ok()?,
                    mtime_ns: i64::try_from(m).ok()?,
                    inode: u64::try_from(i).ok()?,
                    ctime_ns: match ctime {
                        Some((c, _)) => Some(i64::try_from(c).ok()?),
                        None => None,
                    },
                })
            })(),
            _ => None,
        };
        match stat {
            Some(stat) => self.put_stat(Some(stat)),
            // An incomplete stat is no cache: its parts stay as they were written.
            None => {
                for (name, part) in [
                    ("size", size),
                    ("mtime_ns", mtime),
                    ("inode", inode),
                    ("ctime_ns", ctime),
                ] {
                    if let Some((_, raw)) = part {
                        extra.push((name.into(), boxed(raw)));
                    }
                }
            }
        }
        self.extra = (!extra.is_empty()).then(|| Box::new(extra));
    }

    /// Appends the record's JSON to `out`.
    pub(super) fn write(&self, out: &mut Vec<u8>) {
        match self.shape {
            Shape::Raw => {
                if let Some((_, raw)) = self.extra.as_deref().and_then(|e| e.first()) {
                    out.extend_from_slice(raw.get().as_bytes());
                } else {
                    out.extend_from_slice(b"null");
                }
            }
            Shape::Bare => match (self.hash(), self.extra_raw("hash")) {
                (Some(d), _) => push_str(out, &d.text()),
                (None, Some(raw)) => out.extend_from_slice(raw.get().as_bytes()),
                (None, None) => out.extend_from_slice(b"null"),
            },
            Shape::Object => {
                out.push(b'{');
                let mut first = true;
                let mut field = |out: &mut Vec<u8>, name: &str| {
                    if !first {
                        out.extend_from_slice(b", ");
                    }
                    first = false;
                    push_str(out, name);
                    out.extend_from_slice(b": ");
                };
                if let Some(d) = self.hash() {
                    field(out, "hash");
                    push_str(out, &d.text());
                }
                if let Some(s) = self.stat() {
                    field(out, "size");
                    out.extend_from_slice(s.size.to_string().as_bytes());
                    field(out, "mtime_ns");
                    push_str(out, &s.mtime_ns.to_string());
                    field(out, "inode");
                    out.extend_from_slice(s.inode.to_string().as_bytes());
                    if let Some(c) = s.ctime_ns {
                        field(out, "ctime_ns");
                        push_str(out, &c.to_string());
                    }
                }
                if let Some(ms) = self.ingested() {
                    field(out, "ingested_at");
                    push_str(out, &time_text(ms));
                }
                for (name, raw) in self.extra.as_deref().map_or(&[][..], Vec::as_slice) {
                    field(out, name);
                    out.extend_from_slice(raw.get().as_bytes());
                }
                out.push(b'}');
            }
        }
    }
}

/// A key, borrowed from the file's bytes unless it holds escapes.
pub(super) struct Name<'de>(pub(super) Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Name<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Name<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// An object's fields in order, each value as its raw text.
struct Fields<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> serde::Deserialize<'de> for Fields<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                // memsched's own records have five fields: one allocation, not two.
                let mut out = Vec::with_capacity(6);
                while let Some((Name(k), v)) = map.next_entry::<Name<'de>, &'de RawValue>()? {
                    out.push((k, v));
                }
                Ok(Fields(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// The content of a JSON string written without escapes, or None.
fn plain_string(text: &str) -> Option<&str> {
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    // Bytes, not a char pattern: this runs for every string of every record of a large
    // manifest, and a byte loop is several times cheaper (both are ASCII).
    let plain = inner.bytes().all(|b| b != b'\\' && b != b'"');
    plain.then_some(inner)
}

/// A JSON number that is a plain integer (no fraction, no exponent), or None: anything
/// else is kept as written.
fn integer(text: &str) -> Option<i128> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // `str::parse` has a fast path for short numbers; a hand-made i128 fold measured 3 %
    // slower over a whole manifest (callgrind).
    text.parse().ok()
}

/// The milliseconds of a time in exactly memsched's own form; any other spelling is kept
/// as written.
pub(super) fn own_time(text: &str) -> Option<i64> {
    let at = parse_time(text)?;
    let ms = millis(at);
    (time_text(ms) == text).then_some(ms)
}

fn millis(at: SystemTime) -> i64 {
    match at.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_millis()).map_or(i64::MIN, |ms| -ms),
    }
}

fn time_text(ms: i64) -> String {
    let at = if ms >= 0 {
        UNIX_EPOCH + Duration::from_millis(ms.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_millis(ms.unsigned_abs())
    };
    timestamp(at)
}

fn boxed(raw: &RawValue) -> Box<RawValue> {
    raw.to_owned()
}

/// Appends `text` as a JSON string.
pub(super) fn push_str(out: &mut Vec<u8>, text: &str) {
    serde_json::to_writer(&mut *out, text).expect("writing a string to memory cannot fail");
}

#[cfg(test)]
mod tests;
