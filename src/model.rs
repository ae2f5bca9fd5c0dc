//! Shared nouns: small types every layer names, depending on nothing but each other.

pub mod action;
pub mod clock;
pub mod event_kind;
pub mod file_key;
pub mod outcome;
pub mod placeholder;
pub mod scope;
pub mod task_status;
pub mod trigger;
pub mod upload_status;
pub mod watcher_kind;
pub mod words;
