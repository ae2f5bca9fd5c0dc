//! What the user configures: paths.json, watch-rules.toml and its checker, and who may write them.

pub(crate) mod acl;
pub mod paths;
pub mod rules;
pub(crate) mod sources;
pub(crate) mod trust;
