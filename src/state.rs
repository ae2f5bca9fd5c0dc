//! The state files: lossless, shape-keeping reads and atomic writes of each JSON document.

pub mod atomic;
pub mod ingest_hash;
pub mod json_file;
pub mod scheduler_log;
pub mod task_queue;

use std::time::SystemTime;

/// The RFC 3339 form (UTC, milliseconds) every timestamp memsched writes takes.
#[must_use]
pub fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}
