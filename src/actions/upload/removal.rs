//! The removals of the upload plan, pure (issue 17, "the drive follows"): an uploaded
//! entry whose file is gone is deleted from the remote by the `remove` command, its remote
//! checked as an upload's is, under the vanishing guard ingest has (`max_remove`).

use std::path::Path;

use super::entry::resolve;
use crate::config::rules::UploadConfig;

/// An uploaded entry whose file is gone, to delete from the remote (issue 17): the same
/// entry, paths and checked remote an upload of it had.
pub(crate) type DueRemoval = super::entry::DueUpload;

/// What to do about the uploaded entries whose file is gone.
#[derive(Debug, Default)]
pub(super) struct Removals {
    /// Removals to run now.
    pub(super) remove: Vec<DueRemoval>,
    /// Entries whose remote may not be removed: marked `refused`.
    pub(super) refused: Vec<(String, String)>,
    /// Why the removals wait for a person, and how many.
    pub(super) held: Option<(usize, String)>,
}

/// The removals of the uploaded entries whose file is `gone`, of `uploaded` in all: each
/// remote checked as an upload's is (refused when it leaves the root), then all of them
/// held back when they are more than `max_remove` allows, or every uploaded file at once,
/// unless a person confirmed them: the vanishing guard of ingest (rsync's `--max-delete`).
pub(super) fn removals(
    home: &Path,
    config: &UploadConfig,
    gone: &[(&str, Option<&str>)],
    uploaded: usize,
    confirmed: bool,
) -> Removals {
    let mut out = Removals::default();
    let mut found = Vec::new();
    for (entry, remote) in gone {
        match removal(home, config, entry, *remote) {
            Ok(item) => found.push(item),
            Err(why) => out.refused.push(((*entry).to_owned(), why)),
        }
    }
    let n = found.len();
    if n == 0 || confirmed {
        out.remove = found;
        return out;
    }
    if n == uploaded {
        out.held = Some((
            n,
            format!(
                "every uploaded file ({uploaded}) is gone at once: is a disk unmounted or the folder emptied?"
            ),
        ));
    } else if !config.max_remove.allows(n, uploaded) {
        out.held = Some((
            n,
            format!(
                "{n} of {uploaded} uploaded files are gone at once, more than max_remove ({}) allows",
                config.max_remove
            ),
        ));
    } else {
        out.remove = found;
    }
    out
}

/// The removal of a gone `entry`: its recorded remote, else the template filled with its
/// path relative to the home; refused when that remote leaves the root.
fn removal(
    home: &Path,
    config: &UploadConfig,
    entry: &str,
    remote: Option<&str>,
) -> std::result::Result<DueRemoval, String> {
    let abs = resolve(home, entry).ok_or_else(|| {
        "the path is neither a file name nor a file key memsched wrote".to_owned()
    })?;
    let relpath = abs
        .strip_prefix(home)
        .ok()
        .filter(|rel| {
            rel.components()
                .all(|c| matches!(c, std::path::Component::Normal(_)))
        })
        .map(Path::to_path_buf);
    let remote = match (remote, &relpath) {
        (Some(remote), _) => remote.to_owned(),
        (None, Some(rel)) => config.remote.replace("{relpath}", &rel.to_string_lossy()),
        (None, None) => {
            return Err(
                "its file is gone, but it records no remote and lies outside the pipeline home, so where it went is unknown"
                    .to_owned(),
            );
        }
    };
    super::remote::check(&remote, &config.remote_root)
        .map_err(|why| format!("its file is gone, but it cannot be removed: {why}"))?;
    Ok(DueRemoval {
        entry: entry.to_owned(),
        path: abs.clone(),
        abs,
        relpath: relpath.unwrap_or_default(),
        remote,
    })
}
