//! The serde shape of watch-rules.toml, close to the text; [`super::Rules`] is built from it.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::pass_files::PassFiles;
use crate::model::event_kind::EventKind;
use crate::model::scope::Scope;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRules {
    pub debounce: Option<Spanned<String>>,
    pub max_wait: Option<Spanned<String>>,
    pub tick: Option<Spanned<String>>,
    pub log_keep: Option<Spanned<i64>>,
    pub pause_file: Option<Spanned<String>>,
    #[serde(default)]
    pub actions: RawActions,
    #[serde(default)]
    pub rules: Vec<RawRule>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawActions {
    pub ingest: Option<RawIngest>,
    pub retry: Option<RawRetry>,
    pub upload: Option<RawUpload>,
    pub watchdog: Option<RawWatchdog>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIngest {
    pub command: Spanned<Vec<String>>,
    pub timeout: Option<Spanned<String>>,
    pub include: Option<Vec<Spanned<String>>>,
    pub exclude: Option<Vec<Spanned<String>>>,
    pub batch_size: Option<Spanned<i64>>,
    pub pass_files: Option<PassFiles>,
    pub resident: Option<Spanned<bool>>,
    pub idle_exit: Option<Spanned<String>>,
    pub settle: Option<Spanned<String>>,
    pub skip_known_content: Option<bool>,
    pub remove: Option<Spanned<Vec<String>>>,
    pub max_remove: Option<Spanned<RawLimit>>,
}

/// A limit given as a count (`20`) or a share (`"25%"`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawLimit {
    Count(i64),
    Share(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRetry {
    pub command: Spanned<Vec<String>>,
    pub timeout: Option<Spanned<String>>,
    pub max_attempts: Option<Spanned<i64>>,
    pub parallel: Option<Spanned<i64>>,
    pub weights: Option<BTreeMap<String, Spanned<i64>>>,
    pub backoff: Option<RawBackoff>,
    pub stuck_after: Option<Spanned<String>>,
    pub done_keep: Option<Spanned<String>>,
    pub breaker: Option<RawBreaker>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBackoff {
    pub initial: Option<Spanned<String>>,
    pub factor: Option<Spanned<f64>>,
    pub max: Option<Spanned<String>>,
    pub jitter: Option<Spanned<f64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBreaker {
    pub failures: Option<Spanned<i64>>,
    pub cooldown: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpload {
    pub command: Spanned<Vec<String>>,
    pub timeout: Option<Spanned<String>>,
    pub remote: Option<Spanned<String>>,
    pub remote_root: Option<Spanned<String>>,
    pub max_attempts: Option<Spanned<i64>>,
    pub backoff: Option<RawBackoff>,
    pub sources: Option<Vec<Spanned<String>>>,
    pub set: Option<Vec<Spanned<String>>>,
    pub allow: Option<Vec<String>>,
    pub remove: Option<Spanned<Vec<String>>>,
    pub max_remove: Option<Spanned<RawLimit>>,
    pub min_interval: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWatchdog {
    pub command: Option<Spanned<Vec<String>>>,
    pub timeout: Option<Spanned<String>>,
    pub notify: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    pub name: String,
    #[serde(rename = "in")]
    pub scope: Scope,
    pub paths: Vec<Spanned<String>>,
    pub on: Option<Vec<EventKind>>,
    pub run: Vec<Spanned<String>>,
}
