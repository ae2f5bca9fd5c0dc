//! [`Stat`]: the size, modification time, change time and inode of a file, the stat cache
//! of ingest_hash.json and the "changed since its upload" test of upload_log.json.

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;

/// What a file looked like when it was hashed; equal stats mean unchanged content.
///
/// The change time is in it because the modification time is not enough: `touch -d`,
/// `os.utime` and rsync `--times` put an mtime back after a rewrite of the same size
/// (issue 18 item 6), while the change time is set by the kernel alone, to now, on every
/// write and every `utime`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stat {
    pub size: u64,
    pub mtime_ns: i64,
    pub inode: u64,
    /// `None` in a record written before memsched kept it.
    pub ctime_ns: Option<i64>,
}

impl Stat {
    /// The stat of a file's metadata (from `lstat`: links are not followed).
    #[must_use]
    pub fn of(meta: &Metadata) -> Stat {
        Stat {
            size: meta.size(),
            mtime_ns: nanos(meta.mtime(), meta.mtime_nsec()),
            inode: meta.ino(),
            ctime_ns: Some(nanos(meta.ctime(), meta.ctime_nsec())),
        }
    }

    /// The same from a raw `lstat` (nix's `fstatat`), equal to [`Stat::of`] for one file.
    #[must_use]
    pub fn of_raw(st: &nix::sys::stat::FileStat) -> Stat {
        Stat {
            size: u64::try_from(st.st_size).unwrap_or(0),
            mtime_ns: nanos(st.st_mtime, st.st_mtime_nsec),
            inode: st.st_ino,
            ctime_ns: Some(nanos(st.st_ctime, st.st_ctime_nsec)),
        }
    }

    /// Whether a file whose stat is now `self` still holds what was recorded with
    /// `recorded`. A record without a change time (written by an older memsched) is
    /// trusted on its size, mtime and inode, as it was when it was written: an upgrade
    /// must not read 100,000 files again; the run that trusts it completes it.
    #[must_use]
    pub fn matches(&self, recorded: &Stat) -> bool {
        self.size == recorded.size
            && self.mtime_ns == recorded.mtime_ns
            && self.inode == recorded.inode
            && recorded.ctime_ns.is_none_or(|c| self.ctime_ns == Some(c))
    }
}

fn nanos(secs: i64, nsec: i64) -> i64 {
    secs.saturating_mul(1_000_000_000).saturating_add(nsec)
}
