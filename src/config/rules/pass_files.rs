//! [`PassFiles`]: how the ingest step is given its batch of files, as the rules file
//! names it and the ingest action reads it.

use serde::{Deserialize, Serialize};

/// How the ingest step is given its batch of files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PassFiles {
    /// `{files}` in the command expands to one argument per file.
    Args,
    /// Absolute paths on stdin, one per line.
    StdinLines,
    /// Absolute paths on stdin, each ended by a NUL byte (safe for any name).
    StdinNul,
    /// Absolute paths, one per line, in a temporary file named by `{list}`.
    ListFile,
}
