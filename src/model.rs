//! Shared nouns: small types every layer names, depending on nothing but each other.

pub mod action;
pub(crate) mod clock;
pub(crate) mod event_kind;
pub(crate) mod file_key;
pub(crate) mod outcome;
pub(crate) mod placeholder;
pub(crate) mod scope;
pub(crate) mod task_status;
pub mod trigger;
pub(crate) mod upload_status;
pub(crate) mod watcher_kind;
pub(crate) mod words;
