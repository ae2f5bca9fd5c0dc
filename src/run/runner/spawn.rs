//! Starting a step's process, one way for every step (one-shot or resident): its program
//! and scripts judged first, the action locks handed on, a process group of its own, and
//! the group noted in those locks' records.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use std::os::unix::process::CommandExt;

use super::program::{self, Judged};
use crate::error::{Error, Result};
use crate::os::lock;

/// What starts one step.
pub(in crate::run) struct Start<'a> {
    pub argv: &'a [OsString],
    pub cwd: &'a Path,
    pub env: &'a [(&'static str, OsString)],
    /// Scripts its arguments name (see [`program::scripts`]), judged with its program.
    pub scripts: &'a [PathBuf],
    /// The action locks it holds, handed to it (see `lock::spawn_sharing`).
    pub locks: &'a [&'a Path],
    /// Its stdin a pipe (else /dev/null); stdout and stderr are always pipes.
    pub stdin_piped: bool,
    /// What the run has judged already (a fresh one judges everything).
    pub judged: &'a Judged,
}

/// Starts `start`'s command. Refused before it starts when its program or a script could
/// be written by someone other than the user (issue 21 item 3); a start that fails is
/// [`Error::Spawn`] naming the program.
pub(in crate::run) fn spawn_step(start: &Start<'_>) -> Result<Child> {
    let program = || start.argv[0].to_string_lossy().into_owned();
    let path_var = program::path_of(start.env);
    start.judged.check(
        &start.argv[0],
        start.cwd,
        path_var.as_deref(),
        start.scripts,
    )?;
    let child = lock::spawn_sharing(start.locks, || {
        let mut command = Command::new(&start.argv[0]);
        // Changing folder in the child keeps std from spawning with posix_spawn in a
        // static build (it finds glibc's addchdir only by dlsym): a fork of the whole
        // watcher instead, about 0.3 ms more per step (issue 8). Already there, none is
        // needed.
        if !is_current_dir(start.cwd) {
            command.current_dir(start.cwd);
        }
        command
            .args(&start.argv[1..])
            .envs(start.env.iter().map(|(k, v)| (k, v)))
            .stdin(if start.stdin_piped {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so a timeout can kill everything the step started.
            .process_group(0)
            .spawn()
    })
    .map_err(|source| Error::Spawn {
        program: program(),
        source,
    })?;
    // The lock names the step's group, so a helper the step leaves behind in a session of
    // its own is told from the step once both memsched and the group are gone.
    lock::note_step(start.locks, child.id());
    Ok(child)
}

/// Whether `dir` is this process's working folder (the same folder, by device and inode).
fn is_current_dir(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let id = |m: std::fs::Metadata| (m.dev(), m.ino());
    match (std::fs::metadata("."), std::fs::metadata(dir)) {
        (Ok(here), Ok(there)) => id(here) == id(there),
        _ => false,
    }
}
