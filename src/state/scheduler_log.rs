//! scheduler_log.json: one record per run, newest last, bounded by `log_keep`.

use serde_json::Value;

use super::json_file::ListDoc;
use crate::config::paths::Paths;
use crate::error::Result;

/// Appends `record` under the log's lock, dropping the oldest records beyond `keep`.
/// A log that does not parse is left untouched and the error returned.
pub fn append(paths: &Paths, record: Value, keep: usize) -> Result<()> {
    ListDoc::update(&paths.scheduler_log, "runs", |doc: &mut ListDoc| {
        let runs = doc.items_mut();
        runs.push(record);
        let excess = runs.len().saturating_sub(keep);
        runs.drain(..excess);
        (true, ())
    })
}

/// Every run record, oldest first.
pub fn read(paths: &Paths) -> Result<Vec<Value>> {
    Ok(ListDoc::load(&paths.scheduler_log, "runs")?
        .items()
        .to_vec())
}
