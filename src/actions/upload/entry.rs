//! An upload_log.json entry: where its `path` resolves, how it is shown in messages, and
//! an entry due now ([`DueUpload`], what an upload or a removal of it is given).

use std::path::{Path, PathBuf};

use crate::model::file_key;

/// Where an entry's file is: absolute, a file key, or relative to the pipeline home.
/// `None` for a key that does not decode (an odd NUL-plus-hex form).
pub(super) fn resolve(home: &Path, entry: &str) -> Option<PathBuf> {
    let path = file_key::path(entry)?;
    Some(if path.is_absolute() {
        path
    } else {
        home.join(path)
    })
}

/// An entry's path for messages: NULs and other bytes a terminal would act on shown
/// escaped, since the text comes from a file anyone with access to the log wrote.
pub(super) fn shown(entry: &str) -> String {
    entry.escape_debug().to_string()
}

/// An entry to upload now.
#[derive(Debug, Clone)]
pub(crate) struct DueUpload {
    /// The entry's `path`, as written in the log.
    pub entry: String,
    /// That path made absolute against the home (links not followed).
    pub abs: PathBuf,
    /// What `{path}` is: for an upload the file memsched checked, every link resolved
    /// (inside the home or an allowed folder, a regular file), never a link a swap could
    /// point elsewhere once checked (issue 21 item 2); for a removal (its file is gone)
    /// the entry's own path.
    pub path: PathBuf,
    pub relpath: PathBuf,
    pub remote: String,
}
