//! [`Checker`]: turns one raw value of watch-rules.toml (a duration, a count, globs, a
//! command, a backoff, the pause file) into a checked one, or into an error that points at
//! its file, line and column. The sections are put together from these in `parse`.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use toml::Spanned;

use super::defaults;
use super::pass_files::PassFiles;
use super::raw;
use super::tables::{Backoff, CommandSpec, RemoveLimit};
use crate::error::{Error, Result, line_col};
use crate::model::action::Action;
use crate::model::placeholder::{self, Placeholder};

/// Turns raw values into checked ones, reporting problems at their place in the text.
pub(super) struct Checker<'a> {
    pub(super) path: &'a Path,
    pub(super) text: &'a str,
}

impl Checker<'_> {
    /// `msg` as an error at the start of `span` in the text.
    pub(super) fn at(&self, span: Range<usize>, msg: String) -> Error {
        let (line, col) = line_col(self.text, span.start);
        Error::ConfigInvalid {
            path: self.path.to_path_buf(),
            line,
            col,
            msg,
        }
    }

    /// A resident step's command (`key`: `command` or `remove`) gets its files as JSON
    /// lines on stdin: `{files}` or `{list}` in it would silently become nothing.
    pub(super) fn takes_no_file_slot(
        &self,
        span: Range<usize>,
        argv: &[String],
        key: &str,
    ) -> Result<()> {
        let slot = [Placeholder::Files, Placeholder::List]
            .into_iter()
            .find(|p| argv.iter().any(|a| a.contains(&p.slot())));
        match slot {
            Some(p) => Err(self.at(
                span,
                format!(
                    "[actions.ingest] {key} has {slot}, but resident = true sends each batch as a JSON line on stdin: {slot} would be empty; remove it",
                    slot = p.slot()
                ),
            )),
            None => Ok(()),
        }
    }

    /// An ingest command (`key`: `command` or `remove`) must carry the placeholder that
    /// passes `what` the way `pass_files` says; with a stdin mode it must carry neither
    /// `{files}` nor `{list}`, which would silently become nothing (issue 20 item 9).
    pub(super) fn passes_files(
        &self,
        span: Range<usize>,
        argv: &[String],
        pass_files: PassFiles,
        key: &str,
        what: &str,
    ) -> Result<()> {
        let has = |p: Placeholder| argv.iter().any(|a| a.contains(&p.slot()));
        let required = match pass_files {
            PassFiles::Args => Placeholder::Files,
            PassFiles::ListFile => Placeholder::List,
            PassFiles::StdinLines | PassFiles::StdinNul => {
                let mode = match pass_files {
                    PassFiles::StdinNul => "stdin-nul",
                    _ => "stdin-lines",
                };
                return match [Placeholder::Files, Placeholder::List].into_iter().find(|p| has(*p)) {
                    Some(p) => Err(self.at(
                        span,
                        format!(
                            "[actions.ingest] {key} has {slot}, but pass_files = \"{mode}\" sends the files on stdin: {slot} would be empty; remove it",
                            slot = p.slot()
                        ),
                    )),
                    None => Ok(()),
                };
            }
        };
        if has(required) {
            Ok(())
        } else {
            Err(self.at(
                span,
                format!(
                    "[actions.ingest] {key} needs {} to pass the {what}",
                    required.slot()
                ),
            ))
        }
    }

    /// A duration within `(low, high)`, both included. humantime refuses what does not
    /// fit a `Duration`; the range keeps every later `Instant` or `SystemTime` addition
    /// far from overflow.
    pub(super) fn duration(
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

    pub(super) fn backoff(&self, raw: &raw::RawBackoff) -> Result<Backoff> {
        let fraction =
            |v: Option<&Spanned<f64>>, default: f64, ok: fn(f64) -> bool, what: &str| match v {
                None => Ok(default),
                Some(v) if ok(*v.get_ref()) => Ok(*v.get_ref()),
                Some(v) => Err(self.at(v.span(), format!("{what}, found {}", v.get_ref()))),
            };
        let default = Backoff::default();
        Ok(Backoff {
            initial: self.duration(
                raw.initial.as_ref(),
                default.initial,
                "initial",
                defaults::BACKOFF_RANGE,
            )?,
            factor: fraction(
                raw.factor.as_ref(),
                default.factor,
                |f| (1.0..=100.0).contains(&f),
                "factor must be between 1 and 100",
            )?,
            max: self.duration(
                raw.max.as_ref(),
                default.max,
                "max",
                defaults::BACKOFF_RANGE,
            )?,
            jitter: fraction(
                raw.jitter.as_ref(),
                default.jitter,
                |j| (0.0..1.0).contains(&j),
                "jitter must be at least 0 and below 1",
            )?,
        })
    }

    /// `weights`: step name to weight, each 0 or more. A negative weight would quietly sort
    /// its step below every step without one (weight 0); raising the others says it.
    pub(super) fn weights(
        &self,
        value: Option<&BTreeMap<String, Spanned<i64>>>,
    ) -> Result<BTreeMap<String, i64>> {
        let Some(weights) = value else {
            return Ok(BTreeMap::new());
        };
        weights
            .iter()
            .map(|(step, w)| match *w.get_ref() {
                n if n >= 0 => Ok((step.clone(), n)),
                n => Err(self.at(
                    w.span(),
                    format!(
                        "weights.{step} = {n} is out of range: a weight is 0 or more (a step without one weighs 0; weigh the others more instead)"
                    ),
                )),
            })
            .collect()
    }

    /// `[actions.ingest] max_remove`: a count (`20`) or a share of the recorded memories
    /// (`"25%"`).
    pub(super) fn max_remove(&self, limit: Option<&Spanned<raw::RawLimit>>) -> Result<RemoveLimit> {
        let Some(limit) = limit else {
            return Ok(defaults::MAX_REMOVE);
        };
        let bad = || {
            self.at(
                limit.span(),
                "max_remove must be a count of memories (20) or a share of them (\"25%\", up to \"100%\")"
                    .to_owned(),
            )
        };
        match limit.get_ref() {
            raw::RawLimit::Count(n) => usize::try_from(*n)
                .map(RemoveLimit::Count)
                .map_err(|_| bad()),
            raw::RawLimit::Share(text) => text
                .trim()
                .strip_suffix('%')
                .and_then(|n| n.trim().parse::<u8>().ok())
                .filter(|p| *p <= 100)
                .map(RemoveLimit::Percent)
                .ok_or_else(bad),
        }
    }

    /// A count within `(low, high)`, both included.
    pub(super) fn count(
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
    pub(super) fn pause_file(&self, value: Option<&Spanned<String>>) -> Result<PathBuf> {
        let Some(value) = value else {
            return Ok(PathBuf::from(defaults::PAUSE_FILE));
        };
        let path = Path::new(value.get_ref());
        // Judged on the text as written, not on `Path::components` (which reads "sub/" as
        // "sub" and drops a "."): every part a name, so the value names a file (issue 18
        // item 17: "sub/" passed, naming a folder).
        let plain = value
            .get_ref()
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..");
        if !plain {
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

    pub(super) fn attempts(&self, value: Option<&Spanned<i64>>) -> Result<u32> {
        let n = self.count(
            value,
            defaults::MAX_ATTEMPTS as usize,
            "max_attempts",
            defaults::MAX_ATTEMPTS_RANGE,
        )?;
        Ok(u32::try_from(n).expect("MAX_ATTEMPTS_RANGE fits in u32"))
    }

    pub(super) fn globs(
        &self,
        values: Option<&[Spanned<String>]>,
        default: &[&str],
    ) -> Result<Vec<String>> {
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

    pub(super) fn command(
        &self,
        argv: &Spanned<Vec<String>>,
        timeout: Option<&Spanned<String>>,
        default_timeout: Duration,
        action: Action,
    ) -> Result<CommandSpec> {
        self.command_named(argv, timeout, default_timeout, action, "command")
    }

    /// [`command`](Self::command) for a command under another key (`remove`), which the
    /// errors name.
    pub(super) fn command_named(
        &self,
        argv: &Spanned<Vec<String>>,
        timeout: Option<&Spanned<String>>,
        default_timeout: Duration,
        action: Action,
        key: &str,
    ) -> Result<CommandSpec> {
        if argv.get_ref().first().is_none_or(String::is_empty) {
            return Err(self.at(
                argv.span(),
                format!("[actions.{action}] {key} is empty; give the program and its arguments as a list"),
            ));
        }
        let known = Placeholder::of(action);
        for arg in argv.get_ref() {
            for (_, name) in placeholder::slots(arg) {
                let Some(found) = Placeholder::from_name(name).filter(|p| known.contains(p)) else {
                    return Err(self.at(
                        argv.span(),
                        format!(
                            "unknown placeholder {{{name}}} in [actions.{action}] {key}; known here: {}",
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

/// Builds the glob set of already-validated patterns.
pub(super) fn glob_set(patterns: &[String]) -> GlobSet {
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
