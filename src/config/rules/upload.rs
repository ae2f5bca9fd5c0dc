//! `[actions.upload]`: its commands (`command`, the optional `remove`), and the remote template with the root every remote
//! must stay under (issue 18 item 2), both checked at load with the file, line and column.

use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::checker::{Checker, glob_set};
use super::defaults;
use super::raw;
use super::tables::UploadConfig;
use crate::error::Result;
use crate::model::action::Action;
use crate::model::placeholder::{self, Placeholder};

/// `[actions.upload]`.
pub(super) fn upload(check: &Checker, u: raw::RawUpload) -> Result<UploadConfig> {
    let mut sources = check.globs(u.sources.as_deref(), &[])?;
    let set = check.globs(u.set.as_deref(), &[])?;
    // A set's files are sources: watched, queued when new or changed.
    for glob in &set {
        if !sources.contains(glob) {
            sources.push(glob.clone());
        }
    }
    let command = check.command(
        &u.command,
        u.timeout.as_ref(),
        defaults::UPLOAD_TIMEOUT,
        Action::Upload,
    )?;
    let remote = u
        .remote
        .as_ref()
        .map_or_else(|| Placeholder::Relpath.slot(), |r| r.get_ref().clone());
    if let Some(template) = &u.remote {
        placeholders(check, template)?;
    }
    let remote_root = root(check, u.remote.as_ref(), u.remote_root.as_ref())?;
    let remove_command = match &u.remove {
        Some(argv) => Some(check.command_named(
            argv,
            u.timeout.as_ref(),
            defaults::UPLOAD_TIMEOUT,
            Action::Upload,
            "remove",
        )?),
        None => None,
    };
    Ok(UploadConfig {
        remove: remove_command,
        max_remove: check.max_remove(u.max_remove.as_ref())?,
        min_interval: check
            .duration(
                u.min_interval.as_ref(),
                Duration::ZERO,
                "min_interval",
                defaults::MIN_INTERVAL_RANGE,
            )
            .map(|d| Some(d).filter(|d| !d.is_zero()))?,
        command,
        remote,
        remote_root,
        max_attempts: check.attempts(u.max_attempts.as_ref())?,
        backoff: check.backoff(&u.backoff.unwrap_or_default())?,
        source_set: glob_set(&sources),
        sources,
        set_globs: glob_set(&set),
        set,
        allow: u
            .allow
            .unwrap_or_default()
            .into_iter()
            .map(PathBuf::from)
            .collect(),
    })
}

/// The remote template's placeholders: `{relpath}` is the only one filled in (issue 20:
/// a misspelt one was used literally, while the same typo in `command` is refused).
fn placeholders(check: &Checker, template: &Spanned<String>) -> Result<()> {
    let known = Placeholder::Relpath;
    for (_, name) in placeholder::slots(template.get_ref()) {
        if name != known.name() {
            return Err(check.at(
                template.span(),
                format!(
                    "unknown placeholder {{{name}}} in [actions.upload] remote; known here: {}",
                    known.slot()
                ),
            ));
        }
    }
    Ok(())
}

/// The template's literal text before its first placeholder (all of it without one).
fn literal_prefix(template: &str) -> &str {
    placeholder::slots(template)
        .first()
        .map_or(template, |(range, _)| &template[..range.start])
}

/// The folder a template's remotes lie in: its literal prefix up to its last `/` or `:`
/// (`"drive:memory/"` for `"drive:memory/x-{relpath}"`), empty when it has neither.
#[must_use]
pub(super) fn template_root(template: &str) -> String {
    let prefix = literal_prefix(template);
    prefix
        .rfind(['/', ':'])
        .map_or(String::new(), |i| prefix[..=i].to_owned())
}

/// The root every remote must start with: `remote_root` when given (a folder: empty or
/// ending in `/` or `:`, without `..` or control characters, and the template's literal
/// text must lie under it), else the template's own folder.
fn root(
    check: &Checker,
    template: Option<&Spanned<String>>,
    remote_root: Option<&Spanned<String>>,
) -> Result<String> {
    let text = template.map_or_else(|| Placeholder::Relpath.slot(), |t| t.get_ref().clone());
    let Some(given) = remote_root else {
        return Ok(template_root(&text));
    };
    let value = given.get_ref();
    let folder = value.is_empty() || value.ends_with(['/', ':']);
    let climbs = value.split(['/', ':']).any(|part| part == "..");
    if !folder || climbs || value.chars().any(char::is_control) || value.contains('\\') {
        return Err(check.at(
            given.span(),
            format!(
                "remote_root = {value:?} must name a folder: end it with '/' (or ':' for a whole rclone remote), without '..', backslashes or control characters"
            ),
        ));
    }
    if !literal_prefix(&text).starts_with(value.as_str()) {
        let span = template.map_or_else(|| given.span(), Spanned::span);
        return Err(check.at(
            span,
            format!(
                "remote = {text:?} lies outside remote_root = {value:?}: start the template with {value:?}, or widen remote_root"
            ),
        ));
    }
    Ok(value.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_root_is_its_folder_before_the_first_placeholder() {
        for (template, root) in [
            ("{relpath}", ""),
            ("memory/{relpath}", "memory/"),
            ("drive:{relpath}", "drive:"),
            ("drive:drive/x-{relpath}", "drive:drive/"),
            ("/srv/remote drive/{relpath}", "/srv/remote drive/"),
            ("drive:backup.json", "drive:"),
            ("plain", ""),
        ] {
            assert_eq!(template_root(template), root, "{template}");
        }
    }
}
