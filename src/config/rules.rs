//! watch-rules.toml: validated [`Rules`] (settings, action tables, event rules) whose errors
//! point at file, line and column, and the pure matching of a change to actions.

pub mod defaults;
mod pass_files;
mod raw;
mod suggest;

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use toml::Spanned;

use crate::config::trust;
use crate::error::{Error, Result, line_col};
use crate::model::action::Action;
use crate::model::event_kind::EventKind;
use crate::model::placeholder::{self, Placeholder};
use crate::model::scope::Scope;
pub use pass_files::PassFiles;
use raw::RawRules;

/// A configured command: an argument vector with placeholders, and its timeout.
#[derive(Debug, Clone)]
pub struct CommandSpec {
    pub argv: Vec<String>,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct IngestConfig {
    pub command: CommandSpec,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub include_set: GlobSet,
    pub exclude_set: GlobSet,
    pub batch_size: usize,
    pub pass_files: PassFiles,
    /// A file modified more recently than this is still being written and waits.
    pub settle: Duration,
    /// Record a file whose content is already ingested under another path without
    /// sending it (only for indexes keyed by content; an index keyed by path would never
    /// hold the copy under its own name).
    pub skip_known_content: bool,
}

/// When a failed item may be tried again: `initial * factor^(attempts - 1)`, capped at
/// `max`, then spread by up to `jitter` (a fraction) either way.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub initial: Duration,
    pub factor: f64,
    pub max: Duration,
    pub jitter: f64,
}

/// Pauses a step's retries after `failures` consecutive failures with one error class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    pub failures: usize,
    pub cooldown: Duration,
}

#[derive(Debug, Clone)]
pub struct RetryConfig {
    pub command: CommandSpec,
    pub max_attempts: u32,
    /// Tasks run at the same time.
    pub parallel: usize,
    /// Step name -> weight; higher runs first within a priority.
    pub weights: BTreeMap<String, i64>,
    pub backoff: Backoff,
    /// A task `running` for longer than this is taken as crashed and returned to failed.
    pub stuck_after: Duration,
    pub breaker: BreakerConfig,
}

#[derive(Debug, Clone)]
pub struct UploadConfig {
    pub command: CommandSpec,
    pub remote: String,
    pub max_attempts: u32,
    pub backoff: Backoff,
    /// Globs relative to the pipeline home: matching files are queued when new or changed.
    pub sources: Vec<String>,
    pub source_set: GlobSet,
    /// Folders outside the pipeline home whose files may be uploaded (absolute, or
    /// relative to the home). Every other entry must resolve inside the home (issue 10).
    pub allow: Vec<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct WatchdogConfig {
    pub command: Option<CommandSpec>,
    /// Desktop notifications on health getting worse and on tasks dying (needs a session
    /// bus; rate-limited).
    pub notify: bool,
}

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

/// A TOML or shape error in the same `file:line:col: message` form as every other error
/// (toml's own text spans several lines with a caret), with a "did you mean" for a
/// misspelt key or value.
fn parse_error(path: &Path, text: &str, e: &toml::de::Error) -> Error {
    // One line: toml puts what it expected on a line of its own.
    let msg = e.message().trim_end().replace('\n', ": ");
    let hint = suggest::for_message(&msg).unwrap_or_default();
    match e.span() {
        Some(span) => {
            let (line, col) = line_col(text, span.start);
            Error::ConfigInvalid {
                path: path.to_path_buf(),
                line,
                col,
                msg: format!("{msg}{hint}"),
            }
        }
        None => Error::ConfigParse {
            path: path.to_path_buf(),
            msg: format!("{msg}{hint}"),
        },
    }
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

    /// Validates the text of a rules file; `path` is used in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Rules> {
        let raw: RawRules = toml::from_str(text).map_err(|e| parse_error(path, text, &e))?;
        let check = Checker { path, text };
        let mut rules = Rules {
            file: Some(path.to_path_buf()),
            debounce: check.duration(
                raw.debounce.as_ref(),
                defaults::DEBOUNCE,
                "debounce",
                defaults::DEBOUNCE_RANGE,
            )?,
            max_wait: check.duration(
                raw.max_wait.as_ref(),
                defaults::MAX_WAIT,
                "max_wait",
                defaults::MAX_WAIT_RANGE,
            )?,
            tick: check.duration(
                raw.tick.as_ref(),
                defaults::TICK,
                "tick",
                defaults::TICK_RANGE,
            )?,
            log_keep: check.count(
                raw.log_keep.as_ref(),
                defaults::LOG_KEEP,
                "log_keep",
                defaults::LOG_KEEP_RANGE,
            )?,
            pause_file: check.pause_file(raw.pause_file.as_ref())?,
            ingest: None,
            retry: None,
            upload: None,
            watchdog: None,
            rules: Vec::new(),
        };
        if rules.max_wait < rules.debounce {
            let span = raw.max_wait.as_ref().map_or(0..0, Spanned::span);
            return Err(check.at(
                span,
                format!(
                    "max_wait must be at least debounce ({}), found {}",
                    humantime::format_duration(rules.debounce),
                    humantime::format_duration(rules.max_wait)
                ),
            ));
        }
        if let Some(i) = raw.actions.ingest {
            rules.ingest = Some(check.ingest(&i)?);
        }
        if let Some(r) = raw.actions.retry {
            rules.retry = Some(check.retry(r)?);
        }
        if let Some(u) = raw.actions.upload {
            rules.upload = Some(check.upload(u)?);
        }
        if let Some(w) = raw.actions.watchdog {
            let command = match &w.command {
                Some(c) => Some(check.command(
                    c,
                    w.timeout.as_ref(),
                    defaults::WATCHDOG_TIMEOUT,
                    Action::Watchdog,
                )?),
                None => None,
            };
            rules.watchdog = Some(WatchdogConfig {
                command,
                notify: w.notify.unwrap_or(defaults::NOTIFY),
            });
        }
        for r in raw.rules {
            let paths = check.globs(Some(&r.paths), &[])?;
            let mut run = Vec::new();
            for name in &r.run {
                let action = Action::from_name(name.get_ref()).ok_or_else(|| {
                    check.at(
                        name.span(),
                        format!(
                            "unknown action {:?} in rule {:?}; known: ingest, retry, upload, watchdog{}",
                            name.get_ref(),
                            r.name,
                            suggest::closest(name.get_ref(), Action::ALL.map(Action::name))
                                .map_or(String::new(), |a| format!("; did you mean {a:?}?"))
                        ),
                    )
                })?;
                run.push(action);
            }
            rules.rules.push(Rule {
                name: r.name,
                scope: r.scope,
                path_set: glob_set(&paths),
                paths,
                on: r.on.unwrap_or_else(|| EventKind::ALL.to_vec()),
                run,
            });
        }
        Ok(rules)
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

/// Builds the glob set of already-validated patterns.
fn glob_set(patterns: &[String]) -> GlobSet {
    let mut builder = GlobSetBuilder::new();
    for p in patterns {
        builder.add(glob(p).expect("patterns were validated by Checker::globs"));
    }
    builder.build().expect("a set of valid globs always builds")
}

/// `*` stays within one path segment; `**` crosses them.
fn glob(pattern: &str) -> std::result::Result<Glob, globset::Error> {
    GlobBuilder::new(pattern).literal_separator(true).build()
}

/// Turns raw values into checked ones, reporting problems at their place in the text.
struct Checker<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Checker<'_> {
    fn at(&self, span: Range<usize>, msg: String) -> Error {
        let (line, col) = line_col(self.text, span.start);
        Error::ConfigInvalid {
            path: self.path.to_path_buf(),
            line,
            col,
            msg,
        }
    }

    /// A duration within `(low, high)`, both included. humantime refuses what does not
    /// fit a `Duration`; the range keeps every later `Instant` or `SystemTime` addition
    /// far from overflow.
    fn duration(
        &self,
        value: Option<&Spanned<String>>,
        default: Duration,
        key: &str,
        (low, high): (Duration, Duration),
    ) -> Result<Duration> {
        let Some(v) = value else { return Ok(default) };
        let d = humantime::parse_duration(v.get_ref()).map_err(|e| {
            self.at(
                v.span(),
                format!(
                    "{key} = {:?} is not a valid duration ({e}); write it like \"200ms\", \"30s\" or \"15m\"",
                    v.get_ref()
                ),
            )
        })?;
        if (low..=high).contains(&d) {
            Ok(d)
        } else {
            Err(self.at(
                v.span(),
                format!(
                    "{key} = {:?} is out of range: it must be between {} and {}",
                    v.get_ref(),
                    humantime::format_duration(low),
                    humantime::format_duration(high)
                ),
            ))
        }
    }

    fn ingest(&self, i: &raw::RawIngest) -> Result<IngestConfig> {
        let pass_files = i.pass_files.unwrap_or(PassFiles::Args);
        let command = self.command(
            &i.command,
            i.timeout.as_ref(),
            defaults::INGEST_TIMEOUT,
            Action::Ingest,
        )?;
        let required = match pass_files {
            PassFiles::Args => Some(Placeholder::Files.slot()),
            PassFiles::ListFile => Some(Placeholder::List.slot()),
            PassFiles::StdinLines | PassFiles::StdinNul => None,
        };
        if let Some(placeholder) = required
            && !command.argv.iter().any(|a| a.contains(&placeholder))
        {
            return Err(self.at(
                i.command.span(),
                format!("[actions.ingest] command needs {placeholder} to pass the files"),
            ));
        }
        let include = self.globs(i.include.as_deref(), defaults::INGEST_INCLUDE)?;
        let exclude = self.globs(i.exclude.as_deref(), defaults::INGEST_EXCLUDE)?;
        Ok(IngestConfig {
            command,
            include_set: glob_set(&include),
            exclude_set: glob_set(&exclude),
            include,
            exclude,
            batch_size: self.count(
                i.batch_size.as_ref(),
                defaults::BATCH_SIZE,
                "batch_size",
                defaults::BATCH_SIZE_RANGE,
            )?,
            pass_files,
            settle: self.duration(
                i.settle.as_ref(),
                defaults::SETTLE,
                "settle",
                defaults::SETTLE_RANGE,
            )?,
            skip_known_content: i.skip_known_content.unwrap_or(false),
        })
    }

    fn retry(&self, r: raw::RawRetry) -> Result<RetryConfig> {
        let breaker = r.breaker.unwrap_or_default();
        Ok(RetryConfig {
            command: self.command(
                &r.command,
                r.timeout.as_ref(),
                defaults::RETRY_TIMEOUT,
                Action::Retry,
            )?,
            max_attempts: self.attempts(r.max_attempts.as_ref())?,
            parallel: self.count(
                r.parallel.as_ref(),
                defaults::PARALLEL,
                "parallel",
                defaults::PARALLEL_RANGE,
            )?,
            weights: r.weights.unwrap_or_default(),
            backoff: self.backoff(&r.backoff.unwrap_or_default())?,
            stuck_after: self.duration(
                r.stuck_after.as_ref(),
                defaults::STUCK_AFTER,
                "stuck_after",
                defaults::STUCK_AFTER_RANGE,
            )?,
            breaker: BreakerConfig {
                failures: self.count(
                    breaker.failures.as_ref(),
                    defaults::BREAKER_FAILURES,
                    "failures",
                    defaults::BREAKER_FAILURES_RANGE,
                )?,
                cooldown: self.duration(
                    breaker.cooldown.as_ref(),
                    defaults::BREAKER_COOLDOWN,
                    "cooldown",
                    defaults::COOLDOWN_RANGE,
                )?,
            },
        })
    }

    fn upload(&self, u: raw::RawUpload) -> Result<UploadConfig> {
        let sources = self.globs(u.sources.as_deref(), &[])?;
        Ok(UploadConfig {
            command: self.command(
                &u.command,
                u.timeout.as_ref(),
                defaults::UPLOAD_TIMEOUT,
                Action::Upload,
            )?,
            remote: u.remote.unwrap_or_else(|| Placeholder::Relpath.slot()),
            max_attempts: self.attempts(u.max_attempts.as_ref())?,
            backoff: self.backoff(&u.backoff.unwrap_or_default())?,
            source_set: glob_set(&sources),
            sources,
            allow: u
                .allow
                .unwrap_or_default()
                .into_iter()
                .map(PathBuf::from)
                .collect(),
        })
    }

    fn backoff(&self, raw: &raw::RawBackoff) -> Result<Backoff> {
        let fraction =
            |v: Option<&Spanned<f64>>, default: f64, ok: fn(f64) -> bool, what: &str| match v {
                None => Ok(default),
                Some(v) if ok(*v.get_ref()) => Ok(*v.get_ref()),
                Some(v) => Err(self.at(v.span(), format!("{what}, found {}", v.get_ref()))),
            };
        Ok(Backoff {
            initial: self.duration(
                raw.initial.as_ref(),
                defaults::BACKOFF_INITIAL,
                "initial",
                defaults::BACKOFF_RANGE,
            )?,
            factor: fraction(
                raw.factor.as_ref(),
                defaults::BACKOFF_FACTOR,
                |f| (1.0..=100.0).contains(&f),
                "factor must be between 1 and 100",
            )?,
            max: self.duration(
                raw.max.as_ref(),
                defaults::BACKOFF_MAX,
                "max",
                defaults::BACKOFF_RANGE,
            )?,
            jitter: fraction(
                raw.jitter.as_ref(),
                defaults::BACKOFF_JITTER,
                |j| (0.0..1.0).contains(&j),
                "jitter must be at least 0 and below 1",
            )?,
        })
    }

    /// A count within `(low, high)`, both included.
    fn count(
        &self,
        value: Option<&Spanned<i64>>,
        default: usize,
        key: &str,
        (low, high): (usize, usize),
    ) -> Result<usize> {
        let Some(v) = value else { return Ok(default) };
        usize::try_from(*v.get_ref())
            .ok()
            .filter(|n| (low..=high).contains(n))
            .ok_or_else(|| {
                self.at(
                    v.span(),
                    format!(
                        "{key} = {} is out of range: it must be between {low} and {high}",
                        v.get_ref()
                    ),
                )
            })
    }

    /// `pause_file`: a file inside data_dir, relative to it. An empty one named data_dir
    /// itself (issue 9 case 11: paused for ever), an absolute or `..` one a file the
    /// watcher does not watch.
    fn pause_file(&self, value: Option<&Spanned<String>>) -> Result<PathBuf> {
        let Some(value) = value else {
            return Ok(PathBuf::from(defaults::PAUSE_FILE));
        };
        let path = Path::new(value.get_ref());
        let inside = path
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        if value.get_ref().is_empty() || !inside {
            return Err(self.at(
                value.span(),
                format!(
                    "pause_file must name a file inside data_dir, relative to it (like {:?}), found {:?}",
                    defaults::PAUSE_FILE,
                    value.get_ref()
                ),
            ));
        }
        Ok(path.to_path_buf())
    }

    fn attempts(&self, value: Option<&Spanned<i64>>) -> Result<u32> {
        let n = self.count(
            value,
            defaults::MAX_ATTEMPTS as usize,
            "max_attempts",
            defaults::MAX_ATTEMPTS_RANGE,
        )?;
        Ok(u32::try_from(n).expect("MAX_ATTEMPTS_RANGE fits in u32"))
    }

    fn globs(&self, values: Option<&[Spanned<String>]>, default: &[&str]) -> Result<Vec<String>> {
        let Some(values) = values else {
            return Ok(default.iter().map(|s| (*s).to_owned()).collect());
        };
        values
            .iter()
            .map(|v| {
                glob(v.get_ref()).map(|_| v.get_ref().clone()).map_err(|e| {
                    self.at(
                        v.span(),
                        format!("invalid glob {:?}: {}", v.get_ref(), e.kind()),
                    )
                })
            })
            .collect()
    }

    fn command(
        &self,
        argv: &Spanned<Vec<String>>,
        timeout: Option<&Spanned<String>>,
        default_timeout: Duration,
        action: Action,
    ) -> Result<CommandSpec> {
        if argv.get_ref().first().is_none_or(String::is_empty) {
            return Err(self.at(
                argv.span(),
                format!("[actions.{action}] command is empty; give the program and its arguments as a list"),
            ));
        }
        let known = Placeholder::of(action);
        for arg in argv.get_ref() {
            for (_, name) in placeholder::slots(arg) {
                let Some(found) = Placeholder::from_name(name).filter(|p| known.contains(p)) else {
                    return Err(self.at(
                        argv.span(),
                        format!(
                            "unknown placeholder {{{name}}} in [actions.{action}] command; known here: {}",
                            known.iter().map(|k| k.slot()).collect::<Vec<_>>().join(", ")
                        ),
                    ));
                };
                if found == Placeholder::Files && *arg != found.slot() {
                    return Err(self.at(
                        argv.span(),
                        "{files} must be a whole argument: it expands to one argument per file"
                            .to_owned(),
                    ));
                }
            }
        }
        Ok(CommandSpec {
            argv: argv.get_ref().clone(),
            timeout: self.duration(timeout, default_timeout, "timeout", defaults::TIMEOUT_RANGE)?,
        })
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
