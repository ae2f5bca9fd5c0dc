//! What the user configures: paths.json, watch-rules.toml and its checker, and who may write them.

pub mod acl;
pub mod paths;
pub mod rules;
pub mod sources;
pub mod trust;
