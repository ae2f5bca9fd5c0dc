//! [`Rules::parse`]: the text of watch-rules.toml to validated [`Rules`], one section at a
//! time, each checked by its own function. The order is fixed (settings, ingest, retry,
//! upload, watchdog, then each `[[rules]]` entry): of several problems, the first one met
//! is the one reported.

use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use super::checker::{Checker, glob_set};
use super::pass_files::PassFiles;
use super::raw::{self, RawRules};
use super::tables::{BreakerConfig, IngestConfig, Resident, RetryConfig, WatchdogConfig};
use super::{Rule, Rules, defaults, suggest};
use crate::error::{Error, Result, line_col};
use crate::model::action::Action;
use crate::model::event_kind::EventKind;

impl Rules {
    /// Validates the text of a rules file; `path` is used in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Rules> {
        let raw: RawRules = toml::from_str(text).map_err(|e| parse_error(path, text, &e))?;
        let check = Checker { path, text };
        let mut rules = settings(&check, &raw)?;
        if let Some(i) = &raw.actions.ingest {
            rules.ingest = Some(ingest(&check, i)?);
        }
        if let Some(r) = raw.actions.retry {
            rules.retry = Some(retry(&check, r)?);
        }
        if let Some(u) = raw.actions.upload {
            rules.upload = Some(super::upload::upload(&check, u)?);
        }
        if let Some(w) = &raw.actions.watchdog {
            rules.watchdog = Some(watchdog(&check, w)?);
        }
        for r in raw.rules {
            rules.rules.push(rule(&check, r)?);
        }
        Ok(rules)
    }
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

/// The top-level settings (no action or rule yet): each within its range, and `max_wait`
/// at least `debounce`.
fn settings(check: &Checker, raw: &RawRules) -> Result<Rules> {
    let rules = Rules {
        file: Some(check.path.to_path_buf()),
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
        let debounce = humantime::format_duration(rules.debounce);
        let max_wait = humantime::format_duration(rules.max_wait);
        // Blame the key the user wrote: max_wait when they set it, else their debounce
        // that outgrew max_wait's default.
        return Err(match (&raw.max_wait, &raw.debounce) {
            (None, Some(d)) => check.at(
                d.span(),
                format!(
                    "debounce ({debounce}) is longer than max_wait, which is {max_wait} by default: set max_wait too (at least {debounce})"
                ),
            ),
            (m, _) => check.at(
                m.as_ref().map_or(0..0, Spanned::span),
                format!("max_wait must be at least debounce ({debounce}), found {max_wait}"),
            ),
        });
    }
    Ok(rules)
}

/// `batch_size` when the rules leave it out: names in argv keep the modest default (the
/// kernel splits by bytes besides); names on stdin, in a list file or in a resident step's
/// JSON line have no such limit, so a burst goes in one load.
fn default_batch_size(pass_files: PassFiles, resident: bool) -> usize {
    if pass_files == PassFiles::Args && !resident {
        defaults::BATCH_SIZE
    } else {
        defaults::BATCH_SIZE_UNBOUNDED
    }
}

/// `[actions.ingest]`: its command must carry the placeholder that passes the files the way
/// `pass_files` says.
fn ingest(check: &Checker, i: &raw::RawIngest) -> Result<IngestConfig> {
    let pass_files = i.pass_files.unwrap_or(PassFiles::Args);
    let command = check.command(
        &i.command,
        i.timeout.as_ref(),
        defaults::INGEST_TIMEOUT,
        Action::Ingest,
    )?;
    let resident = resident(check, i)?;
    if resident.is_some() {
        check.takes_no_file_slot(i.command.span(), &command.argv, "command")?;
    } else {
        check.passes_files(
            i.command.span(),
            &command.argv,
            pass_files,
            "command",
            "files",
        )?;
    }
    let include = check.globs(i.include.as_deref(), defaults::INGEST_INCLUDE)?;
    let exclude = check.globs(i.exclude.as_deref(), defaults::INGEST_EXCLUDE)?;
    Ok(IngestConfig {
        command,
        include_set: glob_set(&include),
        exclude_set: glob_set(&exclude),
        include,
        exclude,
        batch_size: check.count(
            i.batch_size.as_ref(),
            default_batch_size(pass_files, resident.is_some()),
            "batch_size",
            defaults::BATCH_SIZE_RANGE,
        )?,
        pass_files,
        resident,
        settle: check.duration(
            i.settle.as_ref(),
            defaults::SETTLE,
            "settle",
            defaults::SETTLE_RANGE,
        )?,
        skip_known_content: i.skip_known_content.unwrap_or(false),
        remove: remove_command(check, i, pass_files, resident.is_some())?,
        max_remove: check.max_remove(i.max_remove.as_ref())?,
    })
}

/// `[actions.ingest] remove`: checked as `command` is (the same placeholders and the
/// same way of passing files); it shares the command's timeout.
fn remove_command(
    check: &Checker,
    i: &raw::RawIngest,
    pass_files: PassFiles,
    resident: bool,
) -> Result<Option<Vec<String>>> {
    let Some(argv) = &i.remove else {
        return Ok(None);
    };
    let spec = check.command_named(
        argv,
        None,
        defaults::INGEST_TIMEOUT,
        Action::Ingest,
        "remove",
    )?;
    if resident {
        check.takes_no_file_slot(argv.span(), &spec.argv, "remove")?;
    } else {
        check.passes_files(argv.span(), &spec.argv, pass_files, "remove", "gone files")?;
    }
    Ok(Some(spec.argv))
}

/// `[actions.ingest] resident` and `idle_exit` (issue 19): a resident step gets its
/// batches as JSON lines on stdin, so `pass_files` would say nothing and is refused
/// beside it; `idle_exit` means nothing without it.
fn resident(check: &Checker, i: &raw::RawIngest) -> Result<Option<Resident>> {
    let on = i.resident.as_ref().filter(|r| *r.get_ref());
    match (on, &i.idle_exit) {
        (None, Some(idle)) => Err(check.at(
            idle.span(),
            "idle_exit is for a resident step: set resident = true, or remove idle_exit"
                .to_owned(),
        )),
        (None, None) => Ok(None),
        (Some(flag), _) if i.pass_files.is_some() => Err(check.at(
            flag.span(),
            "resident = true gives the step each batch as one JSON line on stdin: pass_files does not apply beside it; remove pass_files"
                .to_owned(),
        )),
        (Some(_), idle) => Ok(Some(Resident {
            idle_exit: idle
                .as_ref()
                .map(|d| {
                    check.duration(
                        Some(d),
                        Duration::ZERO,
                        "idle_exit",
                        defaults::IDLE_EXIT_RANGE,
                    )
                })
                .transpose()?,
        })),
    }
}

/// `[actions.retry]`.
fn retry(check: &Checker, r: raw::RawRetry) -> Result<RetryConfig> {
    let breaker = r.breaker.unwrap_or_default();
    Ok(RetryConfig {
        command: check.command(
            &r.command,
            r.timeout.as_ref(),
            defaults::RETRY_TIMEOUT,
            Action::Retry,
        )?,
        max_attempts: check.attempts(r.max_attempts.as_ref())?,
        parallel: check.count(
            r.parallel.as_ref(),
            defaults::PARALLEL,
            "parallel",
            defaults::PARALLEL_RANGE,
        )?,
        weights: check.weights(r.weights.as_ref())?,
        backoff: check.backoff(&r.backoff.unwrap_or_default())?,
        stuck_after: check.duration(
            r.stuck_after.as_ref(),
            defaults::STUCK_AFTER,
            "stuck_after",
            defaults::STUCK_AFTER_RANGE,
        )?,
        done_keep: r
            .done_keep
            .as_ref()
            .map(|keep| {
                check.duration(
                    Some(keep),
                    Duration::ZERO,
                    "done_keep",
                    defaults::DONE_KEEP_RANGE,
                )
            })
            .transpose()?,
        breaker: BreakerConfig {
            failures: check.count(
                breaker.failures.as_ref(),
                defaults::BREAKER_FAILURES,
                "failures",
                defaults::BREAKER_FAILURES_RANGE,
            )?,
            cooldown: check.duration(
                breaker.cooldown.as_ref(),
                defaults::BREAKER_COOLDOWN,
                "cooldown",
                defaults::COOLDOWN_RANGE,
            )?,
        },
    })
}

/// `[actions.watchdog]`: its command is optional (the watchdog judges health without one),
/// and so is what goes with it: a timeout without a command is not looked at.
fn watchdog(check: &Checker, w: &raw::RawWatchdog) -> Result<WatchdogConfig> {
    let command = match &w.command {
        Some(c) => Some(check.command(
            c,
            w.timeout.as_ref(),
            defaults::WATCHDOG_TIMEOUT,
            Action::Watchdog,
        )?),
        None => None,
    };
    Ok(WatchdogConfig {
        command,
        notify: w.notify.unwrap_or(defaults::NOTIFY),
    })
}

/// One `[[rules]]` entry: valid globs and known action names (with a "did you mean" for a
/// typo); no `on` means every kind of change.
fn rule(check: &Checker, r: raw::RawRule) -> Result<Rule> {
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
    Ok(Rule {
        name: r.name,
        scope: r.scope,
        path_set: glob_set(&paths),
        paths,
        on: r.on.unwrap_or_else(|| EventKind::ALL.to_vec()),
        run,
    })
}

#[cfg(test)]
mod tests;
