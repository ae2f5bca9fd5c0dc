//! [`Stat`]: the size, modification time and inode of a file, the stat cache of
//! ingest_hash.json and the "changed since its upload" test of upload_log.json.

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;

/// What a file looked like when it was hashed; equal stats mean unchanged content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub size: u64,
    pub mtime_ns: i64,
    pub inode: u64,
}

impl Stat {
    /// The stat of a file's metadata (from `lstat`: links are not followed).
    #[must_use]
    pub fn of(meta: &Metadata) -> Stat {
        Stat {
            size: meta.size(),
            mtime_ns: meta
                .mtime()
                .saturating_mul(1_000_000_000)
                .saturating_add(meta.mtime_nsec()),
            inode: meta.ino(),
        }
    }
}
