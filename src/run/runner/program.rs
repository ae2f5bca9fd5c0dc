//! What a command runs, as StrictModes judges it before it starts (issue 21 item 3): its
//! program, found on `PATH` as execvp finds it, and the scripts its own arguments name in
//! the pipeline home or the rules' folder. `memsched check` resolves programs here too, so
//! it names the very file a run would refuse or start.

use std::ffi::{OsStr, OsString};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::config::paths::Paths;
use crate::config::rules::Rules;
use crate::config::trust;
use crate::error::{Error, Result};
use crate::model::placeholder;

/// What glibc's execvp searches when `PATH` is unset.
const DEFAULT_PATH: &str = "/bin:/usr/bin";

/// Where `program` resolves when started in `cwd` with `path_var` as its `PATH` (as
/// execvp searches it: the first executable file, a relative entry taken from `cwd`), or
/// why it cannot be found.
pub(crate) fn resolve(
    program: &OsStr,
    cwd: &Path,
    path_var: Option<&OsStr>,
) -> std::result::Result<PathBuf, String> {
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.as_encoded_bytes().contains(&b'/') {
        let path = cwd.join(program);
        return if executable(&path) {
            Ok(path)
        } else if path.exists() {
            Err(format!("({}) is not an executable file", path.display()))
        } else {
            Err(format!("({}) does not exist", path.display()))
        };
    }
    let path_var = path_var.unwrap_or(OsStr::new(DEFAULT_PATH));
    std::env::split_paths(path_var)
        .map(|dir| cwd.join(dir).join(program))
        .find(|p| executable(p))
        .ok_or_else(|| "is not found on PATH".to_owned())
}

/// The `PATH` a command started with `env` searches: its own, else memsched's.
#[must_use]
pub(crate) fn path_of(env: &[(&'static str, OsString)]) -> Option<OsString> {
    env.iter()
        .find(|(k, _)| *k == "PATH")
        .map(|(_, v)| v.clone())
        .or_else(|| std::env::var_os("PATH"))
}

/// The scripts among a command's own arguments (`argv` after the program, as written:
/// an argument with a placeholder is data the run fills in, not code): each names an
/// existing regular file, relative to the pipeline home, inside the home or the rules
/// file's folder, and outside data_dir (a memory is never code, and a task's own command
/// names one).
#[must_use]
pub(crate) fn scripts(paths: &Paths, rules: &Rules, argv: &[String]) -> Vec<PathBuf> {
    let home = &paths.home;
    let roots: Vec<PathBuf> = std::iter::once(home.as_path())
        .chain(rules.file.as_deref().and_then(Path::parent))
        .filter_map(|root| std::fs::canonicalize(root).ok())
        .collect();
    let data_dir = std::fs::canonicalize(&paths.data_dir).ok();
    argv.iter()
        .skip(1)
        .filter(|arg| placeholder::slots(arg).is_empty())
        .map(|arg| home.join(arg))
        .filter(|path| {
            let Ok(real) = std::fs::canonicalize(path) else {
                return false;
            };
            real.is_file()
                && roots.iter().any(|root| real.starts_with(root))
                && !data_dir.as_ref().is_some_and(|d| real.starts_with(d))
        })
        .collect()
}

/// Refuses to run `program` (as resolved) or any of `scripts` when someone other than the
/// user could write it or a folder above it. A program that cannot be found is left for
/// the start to report.
pub(crate) fn check(
    program: &OsStr,
    cwd: &Path,
    path_var: Option<&OsStr>,
    scripts: &[PathBuf],
) -> Result<()> {
    if let Ok(found) = resolve(program, cwd, path_var) {
        judge(&found, "program")?;
    }
    scripts.iter().try_for_each(|s| judge(s, "script"))
}

/// Judges one file a command runs (see [`trust::check_executable`]).
pub(crate) fn judge(path: &Path, what: &'static str) -> Result<()> {
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    trust::check_executable(&path).map_err(|e| match e {
        Error::Untrusted { path, why, fix } => Error::UntrustedCommand {
            path,
            what,
            why,
            fix,
        },
        other => other,
    })
}
