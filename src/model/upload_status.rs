//! [`UploadStatus`]: the status of an entry in upload_log.json. A shared noun of upload,
//! the watcher's baselines and health. Unknown statuses are kept as written.

use std::fmt;

/// An upload entry's `status`; a missing one counts as pending.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum UploadStatus {
    Pending,
    Uploaded,
    Failed,
    Skipped,
    /// An entry memsched will not upload: its file lies outside the pipeline home and the
    /// folders the rules allow, its path holds a NUL, or its remote leaves the root the
    /// rules allow (issues 10, 18). The entry's `error` says which; never retried
    /// unless a person sets it back to pending.
    Refused,
    /// Uploaded, then its file was gone and the `remove` command deleted it from the
    /// remote (issue 17). Uploaded again if the file comes back as a source.
    Removed,
    /// A status some script wrote that memsched does not know; kept, never acted on.
    Other(String),
}

impl UploadStatus {
    #[must_use]
    pub fn parse(text: Option<&str>) -> UploadStatus {
        match text {
            None | Some("pending") => UploadStatus::Pending,
            Some("uploaded") => UploadStatus::Uploaded,
            Some("failed") => UploadStatus::Failed,
            Some("skipped") => UploadStatus::Skipped,
            Some("refused") => UploadStatus::Refused,
            Some("removed") => UploadStatus::Removed,
            Some(other) => UploadStatus::Other(other.to_owned()),
        }
    }

    #[must_use]
    pub fn name(&self) -> &str {
        match self {
            UploadStatus::Pending => "pending",
            UploadStatus::Uploaded => "uploaded",
            UploadStatus::Failed => "failed",
            UploadStatus::Skipped => "skipped",
            UploadStatus::Refused => "refused",
            UploadStatus::Removed => "removed",
            UploadStatus::Other(text) => text,
        }
    }

    /// Whether the upload action still owes this entry an attempt.
    #[must_use]
    pub fn is_outstanding(&self) -> bool {
        match self {
            UploadStatus::Pending | UploadStatus::Failed | UploadStatus::Skipped => true,
            UploadStatus::Uploaded
            | UploadStatus::Refused
            | UploadStatus::Removed
            | UploadStatus::Other(_) => false,
        }
    }
}

impl From<UploadStatus> for serde_json::Value {
    fn from(status: UploadStatus) -> serde_json::Value {
        serde_json::Value::from(status.name())
    }
}

impl fmt::Display for UploadStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
