//! An upload_log.json entry's `path`: where it resolves, and how it is shown in messages.

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
