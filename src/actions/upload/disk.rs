//! [`Disk`]: what the upload plan asks of the file system (the source files, whether an
//! entry's file is there, where it resolves), behind a trait so the plan is a pure function
//! of the log and a file system a test can make up; [`RealDisk`] is the one under the home.

use std::path::{Path, PathBuf};

use crate::actions::walk;
use crate::config::rules::UploadConfig;
use crate::model::file_key;
use crate::state::stat::Stat;

/// The folders uploads may come from: the pipeline home first, then the rules' `allow`
/// list (relative entries against the home), each with its links resolved. A folder that
/// does not exist allows nothing.
fn allowed_roots(home: &Path, config: &UploadConfig) -> Vec<PathBuf> {
    std::iter::once(home.to_path_buf())
        .chain(config.allow.iter().map(|a| home.join(a)))
        .filter_map(|root| std::fs::canonicalize(root).ok())
        .collect()
}

/// What the upload plan asks of the file system, behind a trait so the plan is a pure
/// function of the log, the rules and a file system a test can make up.
pub(crate) trait Disk {
    /// The source files the `sources` globs match: (entry key, stat).
    fn sources(&self) -> Vec<(String, Stat)>;
    /// Whether `abs` names nothing (following links: a dangling link is missing).
    fn is_missing(&self, abs: &Path) -> bool;
    /// Where `abs` resolves, following every link, and the allowed folder it lies in; or
    /// why it may not be uploaded (outside every allowed folder, not a regular file).
    fn locate(&self, abs: &Path) -> std::result::Result<(PathBuf, PathBuf), String>;
}

/// The real file system under the pipeline home.
pub(crate) struct RealDisk<'a> {
    home: &'a Path,
    config: &'a UploadConfig,
    /// The folders uploads may come from (see [`allowed_roots`]).
    allowed: Vec<PathBuf>,
}

impl<'a> RealDisk<'a> {
    #[must_use]
    pub(crate) fn new(home: &'a Path, config: &'a UploadConfig) -> RealDisk<'a> {
        RealDisk {
            home,
            config,
            allowed: allowed_roots(home, config),
        }
    }
}

impl Disk for RealDisk<'_> {
    fn sources(&self) -> Vec<(String, Stat)> {
        let config = self.config;
        if config.sources.is_empty() {
            return Vec::new();
        }
        let folders = crate::config::sources::folders(&config.sources);
        let found = walk::files(
            self.home,
            &|rel| crate::config::sources::must_enter(&folders, rel),
            &|rel| config.source_set.is_match(rel),
        );
        found
            .files
            .into_iter()
            .map(|file| (file_key::key(&file.rel), Stat::of(&file.meta)))
            .collect()
    }

    fn is_missing(&self, abs: &Path) -> bool {
        std::fs::metadata(abs).is_err()
    }

    fn locate(&self, abs: &Path) -> std::result::Result<(PathBuf, PathBuf), String> {
        let canonical = std::fs::canonicalize(abs)
            .map_err(|e| format!("cannot resolve {}: {e}", abs.display()))?;
        let Some(root) = self.allowed.iter().find(|root| canonical.starts_with(root)) else {
            return Err(format!(
                "{} lies outside the pipeline home {} and the folders [actions.upload] allow lists",
                canonical.display(),
                self.allowed
                    .first()
                    .map_or(self.home, PathBuf::as_path)
                    .display()
            ));
        };
        match std::fs::metadata(&canonical) {
            Ok(meta) if meta.is_file() => Ok((canonical.clone(), root.clone())),
            Ok(_) => Err(format!("{} is not a regular file", canonical.display())),
            Err(e) => Err(format!("cannot read {}: {e}", canonical.display())),
        }
    }
}
