//! [`HashText`]: a content hash as [`IngestHash::record`](super::IngestHash::record)
//! takes it, a [`Digest`] or text in any other form (kept as written).

use super::record::Digest;

/// A content hash as [`IngestHash::record`](super::IngestHash::record) takes it.
pub trait HashText {
    fn text(&self) -> String;
    /// The digest, when it is one (spares a digest a round trip through its text).
    fn digest(&self) -> Option<Digest>;
}

impl HashText for str {
    fn text(&self) -> String {
        self.to_owned()
    }
    fn digest(&self) -> Option<Digest> {
        Digest::parse(self)
    }
}

impl HashText for Digest {
    fn text(&self) -> String {
        Digest::text(self)
    }
    fn digest(&self) -> Option<Digest> {
        Some(*self)
    }
}
