//! Hard-linked twins in an event run: the watcher hears a write through one name of a
//! file, yet every other name of it holds the same new content. The manifest knows each
//! recorded file's inode, so an event run looks at the other recorded names of the inodes
//! it found, instead of leaving them to the next full walk (issue 18 item 7).

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::hints::WatcherHints;
use super::scan::{Found, stays_inside};
use crate::actions::walk;
use crate::config::rules::IngestConfig;
use crate::model::file_key;
use crate::state::ingest_hash::IngestHash;
use crate::state::stat::Stat;

/// How many records the pass checks in the time of one lstat (measured: 1.6 ms for 100,000
/// records, about 1 µs per lstat on tmpfs).
const LSTAT_RECORDS: usize = 64;

/// Adds to `found` (an event run's files) the other recorded names of their inodes that
/// are still links to them. A twin of a file whose writer was heard finishing is complete
/// too. One pass over the records, made only when a file the run found may have other
/// names.
pub(super) fn add(
    data_dir: &Path,
    config: &IngestConfig,
    hashes: &IngestHash,
    hints: &WatcherHints,
    found: &mut Vec<Found>,
) {
    // Only a file with another name has twins. For a few files in a big home one lstat
    // each tells, and spares the usual save the pass over every record (1.6 ms among
    // 100,000, `cargo bench --bench event_run`); for a storm the pass is the cheaper (an
    // lstat costs about what checking LSTAT_RECORDS records does).
    let probe = found.len().saturating_mul(LSTAT_RECORDS) < hashes.len();
    let mut inodes: HashMap<u64, bool> = HashMap::new();
    for f in found.iter() {
        let other_names =
            !probe || std::fs::symlink_metadata(data_dir.join(&f.rel)).is_ok_and(|m| m.nlink() > 1);
        if other_names {
            *inodes.entry(f.stat.inode).or_default() |= hints.was_closed(&f.rel) || f.heard;
        }
    }
    if inodes.is_empty() {
        return;
    }
    let names: HashSet<&Path> = found.iter().map(|f| f.rel.as_path()).collect();
    let mut twins = Vec::new();
    for (key, rec) in hashes.records() {
        let Some(&heard) = rec.stat().and_then(|s| inodes.get(&s.inode)) else {
            continue;
        };
        let Some(rel) = file_key::path(key) else {
            continue;
        };
        let taken = rel
            .ancestors()
            .skip(1)
            .all(|a| a.as_os_str().is_empty() || walk::enters(config, a));
        if names.contains(rel.as_path())
            || !stays_inside(&rel)
            || !taken
            || !walk::is_memory(config, &rel)
        {
            continue;
        }
        // Still a link to one of the inodes found (not replaced since it was recorded).
        let Ok(meta) = std::fs::symlink_metadata(data_dir.join(&rel)) else {
            continue;
        };
        if meta.is_file() && inodes.contains_key(&meta.ino()) {
            log::debug!("{}: a hard link of a changed file", rel.display());
            twins.push(Found {
                rel,
                stat: Stat::of(&meta),
                heard,
            });
        }
    }
    found.extend(twins);
}
