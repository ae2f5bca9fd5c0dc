//! The file-system watcher across its life: where it looks (the [`Roots`] built at
//! startup), started, rebuilt when data_dir is replaced, when its canary goes missing or
//! when new rules name other folders, and widened as the upload sources' folders appear.

use std::path::{Path, PathBuf};

use crate::config::paths::Paths;
use crate::config::rules::Rules;
use crate::error::{Error, Result};
use crate::model::watcher_kind::WatcherKind;
use crate::watch::mounts::MountWatch;
use crate::watch::{self, CANARY_PREFIX, Interest, Outlet, Roots, Watcher};

/// The file-system watcher, where it looks, what it lets through, and where it sends.
pub(super) struct Watching {
    /// `None` only while it is being replaced, or after a replacement failed.
    watcher: Option<Watcher>,
    /// Hears mounts under data_dir, which inotify cannot (with inotify only: polling
    /// walks into a new mount by itself).
    mounts: Option<MountWatch>,
    /// The kind of the watcher last started; a failed replacement leaves it as it was.
    pub(super) kind: WatcherKind,
    /// Why it polls though inotify was asked for (the watch limit); health names it.
    pub(super) fell_back: Option<String>,
    pub(super) roots: Roots,
    /// The rules notify's thread filters by; replaced on a reload.
    pub(super) interest: Interest,
    pub(super) outlet: Outlet,
}

impl Watching {
    /// Where a watcher will look, and where it will send; none runs until [`Self::start`].
    pub(super) fn new(roots: Roots, interest: Interest, outlet: Outlet) -> Watching {
        Watching {
            watcher: None,
            mounts: None,
            kind: WatcherKind::default(),
            fell_back: None,
            roots,
            interest,
            outlet,
        }
    }

    /// Starts a watcher of `kind` (it may fall back to polling), replacing the running one.
    pub(super) fn start(&mut self, kind: WatcherKind) -> Result<()> {
        // The old watcher goes first, so its inotify watches are free for the new one.
        self.watcher = None;
        // The mounts of now are known before the folders are watched: one made meanwhile
        // is heard.
        self.mounts = None;
        if kind == WatcherKind::Inotify {
            self.mounts = MountWatch::start(&self.roots.data_dir, self.outlet.notices.clone())
                .inspect_err(|e| log::debug!("mounts are found by the tick alone: {e}"))
                .ok();
        }
        let started = watch::start(&self.roots, &self.interest, &self.outlet, kind)?;
        self.kind = started.watcher.kind();
        if self.kind != WatcherKind::Inotify {
            self.mounts = None;
        }
        // A poller asked for (after a fallback, or a deaf inotify) keeps the reason; an
        // inotify watcher that started has none.
        if started.fell_back.is_some() || self.kind == WatcherKind::Inotify {
            self.fell_back = started.fell_back;
        }
        self.watcher = Some(started.watcher);
        Ok(())
    }

    /// The inotify watch limit stopped a watch (`why`): the folders past it would be deaf,
    /// so the whole watcher polls instead. Whether it switched (an old notice from an
    /// inotify watcher already replaced is nothing more to do).
    pub(super) fn past_the_limit(&mut self, why: String) -> bool {
        if self.kind != WatcherKind::Inotify {
            return false;
        }
        log::warn!(
            "{why}: the folders past it are not heard, so the watcher polls every {:?} instead",
            watch::POLL_INTERVAL
        );
        // Its watches go first, so nothing more is asked of the limit.
        self.watcher = None;
        if let Err(e) = self.start(WatcherKind::Poll) {
            log::error!("cannot start polling: {}", e.chain());
        }
        self.fell_back = Some(why);
        true
    }

    /// Watches the source folders that exist now and were missing when the watcher
    /// started; the watch limit's reason, should it stop one.
    pub(super) fn add_source_folders(&mut self) -> Option<String> {
        let watcher = self.watcher.as_mut()?;
        for (dir, mode) in &self.roots.source_dirs {
            if !dir.is_dir() {
                continue;
            }
            match watcher.watch(dir, *mode) {
                Ok(()) => {}
                Err(Error::Watch { source, .. })
                    if matches!(source.kind, notify::ErrorKind::MaxFilesWatch) =>
                {
                    return Some(watch::watch_limit_reason(Some(dir)));
                }
                Err(e) => log::warn!(
                    "cannot watch the upload sources in {}: {}",
                    dir.display(),
                    e.chain()
                ),
            }
        }
        None
    }
}

/// Where the watcher looks for `rules`, read from `rules_file`: the folders resolved, so
/// the paths it reports compare with them.
pub(super) fn roots(paths: &Paths, rules_file: &Path, rules: &Rules) -> Result<Roots> {
    let canonical = |p: &Path| {
        p.canonicalize().map_err(|source| Error::Scan {
            path: p.to_path_buf(),
            source,
        })
    };
    let data_dir = canonical(&paths.data_dir)?;
    let home = canonical(&paths.home)?;
    let (source_dirs, sources) = sources_of(&home, rules);
    Ok(Roots {
        pause_file: data_dir.join(&rules.pause_file),
        canary_file: data_dir.join(format!("{CANARY_PREFIX}{}", std::process::id())),
        state_dir: canonical(&paths.state_dir)?,
        rules_file: canonical(rules_file)?,
        rules_link: link(rules_file),
        data_link: link(&paths.data_dir),
        data_dir,
        home,
        source_dirs,
        sources,
    })
}

/// `path` (the rules, data_dir), absolute, when it is a link.
fn link(path: &Path) -> Option<PathBuf> {
    let is_link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    is_link.then(|| std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()))
}

/// The roots of the upload sources the rules name.
pub(super) fn sources_of(
    home: &Path,
    rules: &Rules,
) -> (Vec<(PathBuf, notify::RecursiveMode)>, globset::GlobSet) {
    match &rules.upload {
        Some(u) if !u.sources.is_empty() => (
            watch::source_folders(home, &u.sources),
            u.source_set.clone(),
        ),
        _ => (Vec::new(), globset::GlobSet::empty()),
    }
}
