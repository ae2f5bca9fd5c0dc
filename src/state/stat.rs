//! [`Stat`]: the size, modification time and inode of a file, the stat cache of
//! ingest_hash.json and the "changed since its upload" test of upload_log.json.

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;

/// What a file looked like when it was hashed; equal stats mean unchanged content.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stat {
    pub size: u64,
    pub mtime_ns: i64,
    pub inode: u64,
}

impl Stat {
    /// The stat of a file's metadata (from `lstat`: links are not followed).
    #[must_use]
    pub fn of(meta: &Metadata) -> Stat {
        Stat::from_parts(meta.size(), meta.mtime(), meta.mtime_nsec(), meta.ino())
    }

    /// The same from a raw `lstat` (nix's `fstatat`), equal to [`Stat::of`] for one file.
    #[must_use]
    pub fn of_raw(st: &nix::sys::stat::FileStat) -> Stat {
        let size = u64::try_from(st.st_size).unwrap_or(0);
        Stat::from_parts(size, st.st_mtime, st.st_mtime_nsec, st.st_ino)
    }

    fn from_parts(size: u64, mtime_s: i64, mtime_nsec: i64, inode: u64) -> Stat {
        Stat {
            size,
            mtime_ns: mtime_s
                .saturating_mul(1_000_000_000)
                .saturating_add(mtime_nsec),
            inode,
        }
    }
}
