//! paths.json: the only reader of it, resolving the pipeline's folders and state files.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::rules::suggest;
use crate::config::trust;
use crate::error::{Error, Result};

/// The keys memsched reads from paths.json. Every other key belongs to the rest of the
/// pipeline and is ignored.
#[derive(Debug, Default, Deserialize)]
struct RawPaths {
    data_dir: Option<String>,
    index_dir: Option<String>,
    state_dir: Option<String>,
    task_queue: Option<String>,
    ingest_hash: Option<String>,
    upload_log: Option<String>,
    watchdog_state: Option<String>,
    scheduler_log: Option<String>,
}

/// The pipeline's folders and state files, all absolute.
#[derive(Debug, Clone)]
pub struct Paths {
    /// paths.json itself.
    pub file: PathBuf,
    /// The folder holding paths.json: relative paths resolve here and commands run here.
    pub home: PathBuf,
    pub data_dir: PathBuf,
    pub index_dir: PathBuf,
    pub state_dir: PathBuf,
    pub task_queue: PathBuf,
    pub ingest_hash: PathBuf,
    pub upload_log: PathBuf,
    pub watchdog_state: PathBuf,
    pub scheduler_log: PathBuf,
    /// What `check` should warn about in paths.json itself: a key a typo away from one
    /// memsched reads, or no data_dir at all (the default then applies unseen).
    pub doubts: Vec<String>,
}

/// The keys of [`RawPaths`], for "did you mean".
const KNOWN_KEYS: [&str; 8] = [
    "data_dir",
    "index_dir",
    "state_dir",
    "task_queue",
    "ingest_hash",
    "upload_log",
    "watchdog_state",
    "scheduler_log",
];

impl Paths {
    /// Reads and resolves `file`. A missing or malformed file is a configuration error,
    /// and so is a paths.json, or a state folder, that someone else could write (see
    /// [`trust`]): commands run in the folders it names.
    pub fn load(file: &Path) -> Result<Paths> {
        trust::check_file(file)?;
        let read = crate::os::regular_file::read(file).and_then(|bytes| {
            String::from_utf8(bytes)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
        });
        let text = match read {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::PathsMissing {
                    path: file.to_path_buf(),
                });
            }
            Err(source) => {
                return Err(Error::ConfigRead {
                    path: file.to_path_buf(),
                    source,
                });
            }
        };
        let raw: RawPaths = serde_json::from_str(&text).map_err(|e| Error::ConfigInvalid {
            path: file.to_path_buf(),
            line: e.line(),
            col: e.column(),
            msg: crate::error::json_message(&e),
        })?;
        let parent = file.parent().filter(|p| !p.as_os_str().is_empty());
        let home = std::path::absolute(parent.unwrap_or(Path::new("."))).map_err(|source| {
            Error::ConfigRead {
                path: file.to_path_buf(),
                source,
            }
        })?;
        let given_data_dir = raw.data_dir.is_some();
        let mut paths = Paths::resolve(file, home, raw);
        trust::check_folder(&paths.state_dir)?;
        paths.doubts = doubts(&text, given_data_dir, &paths.data_dir);
        Ok(paths)
    }

    fn resolve(file: &Path, home: PathBuf, raw: RawPaths) -> Paths {
        // Collecting the components drops `.` segments, so `state_dir = "."` stays tidy.
        let at = |base: &Path, value: Option<String>, default: &str| {
            base.join(value.as_deref().unwrap_or(default))
                .components()
                .collect::<PathBuf>()
        };
        let data_dir = at(&home, raw.data_dir, "Data");
        let index_dir = at(&home, raw.index_dir, "index");
        let state_dir = at(&home, raw.state_dir, ".");
        Paths {
            file: file.to_path_buf(),
            task_queue: at(&state_dir, raw.task_queue, "task_queue.json"),
            ingest_hash: at(&state_dir, raw.ingest_hash, "ingest_hash.json"),
            upload_log: at(&state_dir, raw.upload_log, "upload_log.json"),
            watchdog_state: at(&state_dir, raw.watchdog_state, "watchdog_state.json"),
            scheduler_log: at(&state_dir, raw.scheduler_log, "scheduler_log.json"),
            data_dir,
            index_dir,
            state_dir,
            home,
            doubts: Vec::new(),
        }
    }

    /// The folders holding the state files, each once: where their writers' temporary
    /// files are.
    #[must_use]
    pub fn state_folders(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = vec![self.state_dir.clone()];
        let files = [
            &self.task_queue,
            &self.ingest_hash,
            &self.upload_log,
            &self.watchdog_state,
            &self.scheduler_log,
        ];
        for dir in files.iter().filter_map(|f| f.parent()) {
            if !out.iter().any(|d| d == dir) {
                out.push(dir.to_path_buf());
            }
        }
        out
    }

    /// The lock file guarding `name` (an action name or `scheduler`), in state_dir.
    #[must_use]
    pub fn action_lock(&self, name: &str) -> PathBuf {
        self.state_dir.join(format!("{name}.lock"))
    }

    /// The lock file that writers of a shared state file take first: `<file>.lock`.
    #[must_use]
    pub fn file_lock(state_file: &Path) -> PathBuf {
        let mut name = state_file.as_os_str().to_owned();
        name.push(".lock");
        PathBuf::from(name)
    }

    /// Every state file with its role, for `check` and the watchdog.
    #[must_use]
    pub fn state_files(&self) -> [(&'static str, &Path); 5] {
        [
            ("task_queue", &self.task_queue),
            ("ingest_hash", &self.ingest_hash),
            ("upload_log", &self.upload_log),
            ("watchdog_state", &self.watchdog_state),
            ("scheduler_log", &self.scheduler_log),
        ]
    }
}

/// paths.json is shared with the pipeline's other tools, so a key memsched does not read
/// is theirs; but one close to a key memsched reads is most likely a typo of it.
fn doubts(text: &str, given_data_dir: bool, data_dir: &Path) -> Vec<String> {
    let keys = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(text)
        .map(|map| map.keys().cloned().collect::<Vec<_>>())
        .unwrap_or_default();
    let mut out: Vec<String> = keys
        .iter()
        .filter(|k| !KNOWN_KEYS.contains(&k.as_str()))
        .filter_map(|k| {
            suggest::closest(k, KNOWN_KEYS).map(|known| {
                format!("paths.json has the key {k:?}, which memsched does not read; did you mean {known:?}?")
            })
        })
        .collect();
    if !given_data_dir {
        out.push(format!(
            "paths.json gives no data_dir: memsched watches {}, the default",
            data_dir.display()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_resolve_against_the_home_folder() {
        let p = Paths::resolve(
            Path::new("/p/paths.json"),
            PathBuf::from("/p"),
            RawPaths::default(),
        );
        assert_eq!(p.data_dir, Path::new("/p/Data"));
        assert_eq!(p.index_dir, Path::new("/p/index"));
        assert_eq!(p.task_queue, Path::new("/p/task_queue.json"));
        assert_eq!(p.action_lock("ingest"), Path::new("/p/ingest.lock"));
    }

    #[test]
    fn state_file_names_resolve_against_state_dir() {
        let raw = RawPaths {
            state_dir: Some("state".into()),
            task_queue: Some("queue.json".into()),
            ..RawPaths::default()
        };
        let p = Paths::resolve(Path::new("/p/paths.json"), PathBuf::from("/p"), raw);
        assert_eq!(p.task_queue, Path::new("/p/state/queue.json"));
        assert_eq!(
            Paths::file_lock(&p.task_queue),
            Path::new("/p/state/queue.json.lock")
        );
    }
}
