//! What a command runs, as StrictModes judges it before it starts (issue 21 item 3): its
//! program, found on `PATH` as execvp finds it, and the scripts its own arguments name in
//! the pipeline home or the rules' folder. `memsched check` resolves programs here too, so
//! it names the very file a run would refuse or start.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

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

/// What one run has judged of the commands it starts, so a step run batch after batch
/// (or a retry command run task after task) is not judged again each time: the scripts
/// each argument vector names, and the starts found trustworthy. A refusal is never kept
/// (each start it meets is refused afresh), and a later run judges everything again, so a
/// file made writable by others between runs is refused by the next.
#[derive(Debug, Default)]
pub(crate) struct Judged {
    scripts: Mutex<HashMap<Vec<String>, Vec<PathBuf>>>,
    passed: Mutex<HashSet<Start>>,
}

/// Everything a start's verdict depends on: the program as written, where it starts, the
/// `PATH` it is searched on, and the scripts judged with it.
type Start = (OsString, PathBuf, Option<OsString>, Vec<PathBuf>);

impl Judged {
    /// [`scripts`], found once per argument vector in this run.
    #[must_use]
    pub(crate) fn scripts(&self, paths: &Paths, rules: &Rules, argv: &[String]) -> Vec<PathBuf> {
        let mut known = self.scripts.lock().unwrap_or_else(PoisonError::into_inner);
        known
            .entry(argv.to_vec())
            .or_insert_with(|| scripts(paths, rules, argv))
            .clone()
    }

    /// [`check`], skipped for a start this run already found trustworthy.
    pub(crate) fn check(
        &self,
        program: &OsStr,
        cwd: &Path,
        path_var: Option<&OsStr>,
        scripts: &[PathBuf],
    ) -> Result<()> {
        let start: Start = (
            program.to_owned(),
            cwd.to_path_buf(),
            path_var.map(OsStr::to_owned),
            scripts.to_vec(),
        );
        let passed = || self.passed.lock().unwrap_or_else(PoisonError::into_inner);
        if passed().contains(&start) {
            return Ok(());
        }
        check(program, cwd, path_var, scripts)?;
        passed().insert(start);
        Ok(())
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_found_trustworthy_is_not_judged_again_in_the_run_but_is_in_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("step.sh");
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        let mode = |m| std::fs::set_permissions(&script, std::fs::Permissions::from_mode(m));
        mode(0o755).unwrap();
        let scripts = [script.clone()];
        let judge = |judged: &Judged| judged.check(OsStr::new("sh"), dir.path(), None, &scripts);
        let run = Judged::default();
        judge(&run).unwrap();
        mode(0o777).unwrap();
        judge(&run).expect("judged once in a run");
        let next = Judged::default();
        assert!(judge(&next).is_err(), "the next run judges afresh");
        assert!(judge(&next).is_err(), "a refusal is not kept as a pass");
        mode(0o755).unwrap();
        judge(&next).expect("a refusal is not kept either");
    }
}
