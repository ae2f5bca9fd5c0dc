//! An upload `set` (issue 19): sources that go up together in a stated order (an index,
//! then its side-car), after every other upload of a run, so the drive holds a mismatched
//! pair only while the set's own uploads take, and never a new side-car beside an index
//! that did not go up.

use super::entry::DueUpload;
use crate::config::rules::UploadConfig;

/// Where `entry` stands in the set: the first of its globs that matches it; `None`: it is
/// not in the set.
#[must_use]
pub(crate) fn rank(config: &UploadConfig, entry: &str) -> Option<usize> {
    if config.set.is_empty() {
        return None;
    }
    config.set_globs.matches(entry).into_iter().min()
}

/// Orders the due uploads: every file outside the set first, in the plan's order, then the
/// set's, by the glob that names them, then by path.
pub(crate) fn order(config: &UploadConfig, due: &mut [DueUpload]) {
    if config.set.is_empty() {
        return;
    }
    // Cached: a glob match per entry, not per comparison.
    due.sort_by_cached_key(|d| rank(config, &d.entry).map(|r| (r, d.entry.clone())));
}

/// Whether a file of rank `rank` waits because a file of an earlier place in the set did
/// not go up (it failed in this run, waits for its backoff, or was given up): the set goes
/// up whole, in order, or its later files wait with it.
#[must_use]
pub(crate) fn held_back(rank: Option<usize>, blocked_from: Option<usize>) -> bool {
    matches!((rank, blocked_from), (Some(r), Some(b)) if r > b)
}
