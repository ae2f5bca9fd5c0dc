//! watch-rules.toml: validated [`Rules`] (settings, action tables, event rules) whose errors
//! point at file, line and column, and the pure matching of a change to actions. The rooms
//! below: `raw` (the serde shape), `parse` (one check per section), `checker` (one check
//! per value), `tables` (the typed action tables), `upload` (its table: the remote and its root),
//! `defaults`, `suggest` ("did you mean").

mod checker;
pub(crate) mod defaults;
mod parse;
mod pass_files;
mod raw;
pub(crate) mod suggest;
mod tables;
mod upload;

use std::path::{Path, PathBuf};
use std::time::Duration;

use globset::GlobSet;

use crate::config::trust;
use crate::error::{Error, Result};
use crate::model::action::Action;
use crate::model::event_kind::EventKind;
use crate::model::scope::Scope;
pub use pass_files::PassFiles;
pub use tables::{
    Backoff, BreakerConfig, CommandSpec, IngestConfig, RemoveLimit, Resident, RetryConfig,
    UploadConfig, WatchdogConfig,
};

/// One `[[rules]]` entry: changes under `scope` matching `paths` and `on` run `run`.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub scope: Scope,
    pub paths: Vec<String>,
    pub path_set: GlobSet,
    pub on: Vec<EventKind>,
    pub run: Vec<Action>,
}

/// The whole validated rules file.
#[derive(Debug, Clone)]
pub struct Rules {
    /// Where the rules came from (`None`: built-in defaults, no file found).
    pub file: Option<PathBuf>,
    pub debounce: Duration,
    pub max_wait: Duration,
    pub tick: Duration,
    pub log_keep: usize,
    /// While this file (relative to data_dir) exists, the watcher defers its runs.
    pub pause_file: PathBuf,
    pub ingest: Option<IngestConfig>,
    pub retry: Option<RetryConfig>,
    pub upload: Option<UploadConfig>,
    pub watchdog: Option<WatchdogConfig>,
    pub rules: Vec<Rule>,
}

impl Rules {
    /// Reads and validates a rules file. A rules file someone else could write is
    /// refused (see [`trust`]): its commands run with the user's rights.
    pub fn load(path: &Path) -> Result<Rules> {
        trust::check_file(path)?;
        let text = std::fs::read_to_string(path).map_err(|source| Error::ConfigRead {
            path: path.to_path_buf(),
            source,
        })?;
        Rules::parse(path, &text)
    }

    /// Whether `action` has a table in the rules file.
    #[must_use]
    pub fn is_configured(&self, action: Action) -> bool {
        match action {
            Action::Ingest => self.ingest.is_some(),
            Action::Retry => self.retry.is_some(),
            Action::Upload => self.upload.is_some(),
            Action::Watchdog => self.watchdog.is_some(),
        }
    }

    /// The rules a change matches, with the actions each asks for. `relpath` is relative to
    /// the scope's folder.
    #[must_use]
    pub fn matching(&self, scope: Scope, relpath: &Path, kind: EventKind) -> Vec<&Rule> {
        self.rules
            .iter()
            .filter(|r| r.scope == scope && r.on.contains(&kind) && r.path_set.is_match(relpath))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Rules> {
        Rules::parse(Path::new("rules.toml"), text)
    }

    fn error(text: &str) -> String {
        parse(text).expect_err("should be rejected").to_string()
    }

    #[test]
    fn an_empty_file_has_documented_defaults_and_no_actions() {
        let r = parse("").unwrap();
        assert_eq!(r.debounce, Duration::from_millis(500));
        assert_eq!(r.tick, Duration::from_secs(900));
        assert_eq!(r.log_keep, 200);
        assert!(Action::ALL.iter().all(|a| !r.is_configured(*a)));
    }

    #[test]
    fn names_that_are_no_arguments_default_to_a_batch_a_burst_fits_in() {
        let stdin = "[actions.ingest]\ncommand = [\"i\"]\npass_files = \"stdin-nul\"\n";
        assert_eq!(parse(stdin).unwrap().ingest.unwrap().batch_size, 10_000);
        let resident = "[actions.ingest]\ncommand = [\"i\"]\nresident = true\n";
        assert_eq!(parse(resident).unwrap().ingest.unwrap().batch_size, 10_000);
        let set =
            "[actions.ingest]\ncommand = [\"i\"]\npass_files = \"stdin-nul\"\nbatch_size = 7\n";
        assert_eq!(parse(set).unwrap().ingest.unwrap().batch_size, 7);
    }

    #[test]
    fn ingest_defaults() {
        let r = parse("[actions.ingest]\ncommand = [\"ingest\", \"{files}\"]\n").unwrap();
        let i = r.ingest.unwrap();
        assert_eq!(i.batch_size, 64);
        assert_eq!(i.pass_files, PassFiles::Args);
        assert_eq!(i.include, ["**/*.txt"]);
        assert!(i.include_set.is_match("a.txt"));
        assert!(i.include_set.is_match("x/y/a.txt"));
        assert!(i.exclude_set.is_match("x/.hidden.txt"));
        assert!(i.exclude_set.is_match(".git/a.txt"));
        assert!(i.exclude_set.is_match("notes.txt~"));
        assert!(!i.exclude_set.is_match("notes/today.txt"));
    }

    #[test]
    fn unknown_keys_point_at_their_line() {
        let e = error("debounce = \"1s\"\nbogus = 1\n");
        assert!(
            e.starts_with("rules.toml:2:1: unknown field `bogus`"),
            "{e}"
        );
    }

    #[test]
    fn unknown_action_in_run_points_at_line_and_column() {
        let e = error(
            "[[rules]]\nname = \"r\"\nin = \"data\"\npaths = [\"*.txt\"]\nrun = [\"ingest\", \"reindex\"]\n",
        );
        assert_eq!(
            e,
            "rules.toml:5:18: unknown action \"reindex\" in rule \"r\"; known: ingest, retry, upload, watchdog"
        );
    }

    #[test]
    fn bad_globs_empty_commands_and_durations_are_rejected() {
        assert!(
            error("[actions.ingest]\ncommand = [\"i\", \"{files}\"]\ninclude = [\"a[\"]\n")
                .starts_with("rules.toml:3:12: invalid glob")
        );
        assert!(
            error("[actions.ingest]\ncommand = []\n")
                .starts_with("rules.toml:2:11: [actions.ingest] command is empty")
        );
        assert!(
            error("tick = \"soon\"\n")
                .starts_with("rules.toml:1:8: tick = \"soon\" is not a valid duration")
        );
        assert!(error("[actions.ingest]\ncommand = [\"i\"]\n").contains("needs {files}"));
        assert!(
            error("[actions.retry]\ncommand = [\"r\", \"{path}\"]\n")
                .contains("unknown placeholder {path}")
        );
        assert!(
            error("[actions.ingest]\ncommand = [\"i\", \"--in={files}\"]\n")
                .contains("whole argument")
        );
    }

    #[test]
    fn rules_match_scope_kind_and_glob() {
        let r = parse(
            "[[rules]]\nname = \"memories\"\nin = \"data\"\npaths = [\"**/*.txt\"]\non = [\"create\", \"modify\"]\nrun = [\"ingest\"]\n",
        )
        .unwrap();
        assert_eq!(
            r.matching(Scope::Data, Path::new("a/b.txt"), EventKind::Create)
                .len(),
            1
        );
        assert!(
            r.matching(Scope::Data, Path::new("a/b.txt"), EventKind::Remove)
                .is_empty()
        );
        assert!(
            r.matching(Scope::State, Path::new("a/b.txt"), EventKind::Create)
                .is_empty()
        );
        assert!(
            r.matching(Scope::Data, Path::new("a/b.md"), EventKind::Create)
                .is_empty()
        );
    }
}
