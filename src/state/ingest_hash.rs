//! ingest_hash.json: what has been ingested. `{"version": 1, "files": {key: record}}`, where
//! key is the path relative to data_dir (see [`crate::model::file_key`]) and a record holds the
//! content `hash` plus `size`, `mtime_ns` and `inode`, the stat cache that spares unchanged
//! files a re-hash. Only memsched writes it, under `ingest.lock`.
//!
//! Held as typed, compact records (a 32-byte hash, integers; fields other scripts wrote
//! kept as their raw JSON text) rather than a generic JSON tree: 100,000 records took
//! 168 MiB as `serde_json::Value`s (issue 8). Files recorded since the last compaction go
//! to a journal beside it (`ingest_hash.json.journal`), so recording one file never
//! rewrites the others; [`IngestHash::save`] folds the journal into ingest_hash.json.

mod files;
mod hash_text;
mod held;
mod journal;
mod json;
mod manifest;
pub(crate) mod record;

pub use hash_text::HashText;
pub use held::{Held, HeldGuard};
pub use manifest::IngestHash;
pub use record::{Digest, Record};
