//! `memsched forget`: a person acknowledges that memories are gone, so their records stop
//! being pending removals. For pipelines without a `remove` command (nothing else ever
//! drops those records) and for removals memsched held back that should not reach the
//! step. Taken under ingest.lock, as ingest writes the same records.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Serialize;

use crate::commands::output;
use crate::config::paths::Paths;
use crate::error::{Error, Exit, Result};
use crate::model::{file_key, words};
use crate::os::lock;
use crate::state::ingest_hash::IngestHash;
use crate::state::timestamp;

/// What a forget did, as `--json` prints it.
#[derive(Debug, Serialize)]
pub(crate) struct Forgotten {
    /// The records dropped, as paths relative to data_dir.
    pub forgot: Vec<String>,
    /// Paths that were not forgotten, each with why.
    pub refused: Vec<Refusal>,
    pub dry_run: bool,
}

#[derive(Debug, Serialize)]
pub(crate) struct Refusal {
    pub path: String,
    pub why: String,
}

/// Forgets the records of `targets` (paths relative to data_dir, or absolute inside it),
/// or with `all` of every recorded file that is gone. Exit 1 when some target was refused.
pub(crate) fn run(
    paths: &Paths,
    targets: &[PathBuf],
    all: bool,
    dry_run: bool,
    json: bool,
) -> Result<Exit> {
    if !all && targets.is_empty() {
        return Err(Error::Usage(
            "name the gone memories to forget (relative to data_dir), or give --all".to_owned(),
        ));
    }
    // A missing data_dir is an unmounted disk, not a folder of deleted memories.
    if !paths.data_dir.is_dir() {
        return Err(Error::Usage(format!(
            "{}: data_dir is missing; every record would look gone. Mount or restore it first",
            paths.data_dir.display()
        )));
    }
    let _guard = lock::try_acquire(&paths.action_lock("ingest"))?;
    let mut hashes = IngestHash::load(&paths.ingest_hash)?;
    let mut done = Forgotten {
        forgot: Vec::new(),
        refused: Vec::new(),
        dry_run,
    };
    let keys: Vec<(String, Result<PathBuf, String>)> = if all {
        let mut keys: Vec<String> = hashes.keys().map(str::to_owned).collect();
        keys.sort_unstable();
        keys.into_iter()
            .filter_map(|key| {
                let rel = file_key::path(&key)?;
                is_gone(&paths.data_dir, &rel).then_some((key, Ok(rel)))
            })
            .collect()
    } else {
        targets
            .iter()
            .map(|target| {
                let rel = relative(&paths.data_dir, target);
                let key = rel
                    .as_ref()
                    .map_or_else(|_| String::new(), |r| file_key::key(r));
                (key, rel)
            })
            .collect()
    };
    for (key, rel) in keys {
        let rel = match rel {
            Ok(rel) => rel,
            Err(why) => {
                done.refused.push(Refusal { path: key, why });
                continue;
            }
        };
        let shown = file_key::display(&rel);
        let why = if hashes.get(&key).is_none() {
            Some("no record of it in ingest_hash.json".to_owned())
        } else if !is_gone(&paths.data_dir, &rel) {
            Some("still in data_dir; memsched forgets only memories that are gone".to_owned())
        } else {
            None
        };
        match why {
            Some(why) => done.refused.push(Refusal { path: shown, why }),
            None => {
                if !dry_run {
                    hashes.remove(&key, &timestamp(SystemTime::now()));
                }
                done.forgot.push(shown);
            }
        }
    }
    if !dry_run && !done.forgot.is_empty() {
        hashes.flush()?;
    }
    for refusal in &done.refused {
        eprintln!("memsched: {}: {}", refusal.path, refusal.why);
    }
    let _ = output::print(json, &done, |out, done| {
        let verb = if done.dry_run {
            "would forget"
        } else {
            "forgot"
        };
        writeln!(
            out,
            "{verb} {}",
            words::count(done.forgot.len(), "record", "records")
        )?;
        for path in &done.forgot {
            writeln!(out, "  {path}")?;
        }
        Ok(())
    });
    Ok(if done.refused.is_empty() {
        Exit::Ok
    } else {
        Exit::ActionFailed
    })
}

/// Whether nothing is at `rel` under `data_dir` (a link counts as something).
fn is_gone(data_dir: &Path, rel: &Path) -> bool {
    std::fs::symlink_metadata(data_dir.join(rel)).is_err()
}

/// `target` relative to data_dir: as given when relative (no `..`), or stripped of
/// data_dir when absolute.
fn relative(data_dir: &Path, target: &Path) -> std::result::Result<PathBuf, String> {
    let rel = if target.is_absolute() {
        target
            .strip_prefix(data_dir)
            .map_err(|_| format!("not inside data_dir ({})", data_dir.display()))?
            .to_path_buf()
    } else {
        target.to_path_buf()
    };
    let plain = rel
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)));
    if plain && !rel.as_os_str().is_empty() {
        Ok(rel)
    } else {
        Err("give the path relative to data_dir, without `..`".to_owned())
    }
}
