//! Runs one pipeline command: an argument vector (never a shell) with its placeholders
//! filled byte for byte, optional stdin, its own process group so a timeout kills every
//! process it started, and the tail of its output kept for the run log. Every running
//! command is in [`running`] until it ends, so a second Ctrl-C can end them all
//! ([`abort_all`]).

mod output;
pub(crate) mod program;
pub(crate) use program::Judged;
pub(in crate::run) mod registry;
mod spawn;

use std::ffi::OsString;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;

use crossbeam_channel::{RecvTimeoutError, after, select};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::error::{Error, Result};
use crate::model::placeholder::{self, Placeholder};
use crate::os::lock;
use crate::run::live;
pub(crate) use crate::state::run_record::CommandReport;
pub(in crate::run) use output::Tail;
use output::drain;
pub(crate) use registry::{Running, abort_all, running};
pub(in crate::run) use spawn::{Start, spawn_step};

/// Arguments shown in the log before the rest are summarised.
const SHOWN_ARGS: usize = 8;
/// After SIGTERM on timeout, how long the group has before SIGKILL.
pub(in crate::run) const KILL_GRACE: Duration = Duration::from_secs(2);
/// After the command exits, how long to wait for its output pipes to close (a background
/// grandchild may hold them open forever).
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// Values for the placeholders of a command.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Vars<'a> {
    pub files: &'a [PathBuf],
    pub list: Option<&'a Path>,
    pub path: Option<&'a Path>,
    pub relpath: Option<&'a Path>,
    pub remote: Option<&'a str>,
    pub task_id: Option<&'a str>,
}

/// Fills the placeholders of `argv`. `{files}` (always a whole argument, as the rules
/// check) becomes one argument per file; the others are replaced inside their argument.
/// A placeholder with no value here is left as written.
#[must_use]
pub(crate) fn expand(argv: &[String], vars: &Vars<'_>) -> Vec<OsString> {
    let mut out = Vec::with_capacity(argv.len() + vars.files.len());
    for arg in argv {
        if *arg == Placeholder::Files.slot() {
            out.extend(vars.files.iter().map(|f| f.as_os_str().to_owned()));
            continue;
        }
        let mut bytes = Vec::with_capacity(arg.len());
        let mut copied = 0;
        for (range, name) in placeholder::slots(arg) {
            let value = Placeholder::from_name(name).and_then(|p| vars.value(p));
            if let Some(value) = value {
                bytes.extend_from_slice(&arg.as_bytes()[copied..range.start]);
                bytes.extend_from_slice(value);
                copied = range.end;
            }
        }
        bytes.extend_from_slice(&arg.as_bytes()[copied..]);
        out.push(OsString::from_vec(bytes));
    }
    out
}

impl Vars<'_> {
    /// The bytes that replace `placeholder` inside an argument, if it has a value here.
    fn value(&self, placeholder: Placeholder) -> Option<&[u8]> {
        match placeholder {
            // `{files}` is never inside an argument (the rules refuse it).
            Placeholder::Files => None,
            Placeholder::List => self.list.map(|p| p.as_os_str().as_bytes()),
            Placeholder::TaskId => self.task_id.map(str::as_bytes),
            Placeholder::Path => self.path.map(|p| p.as_os_str().as_bytes()),
            Placeholder::Relpath => self.relpath.map(|p| p.as_os_str().as_bytes()),
            Placeholder::Remote => self.remote.map(str::as_bytes),
        }
    }
}

/// One command to run.
#[derive(Debug, Clone)]
pub(crate) struct Invocation {
    pub argv: Vec<OsString>,
    pub cwd: PathBuf,
    pub env: Vec<(&'static str, OsString)>,
    pub stdin: Option<Vec<u8>>,
    pub timeout: Duration,
    /// The action lock this process holds for the step, handed to it (see
    /// `lock::spawn_sharing`); `None` for a command that runs under no action lock.
    pub lock: Option<PathBuf>,
    /// A second action lock handed on the same way: the lock of the step a retried task
    /// runs (ingest.lock for an ingest task), so that step never runs twice at once
    /// (issue 21 item 1).
    pub step_lock: Option<PathBuf>,
    /// Scripts the command's own arguments name (see [`program::scripts`]): judged, with
    /// the program, before it starts.
    pub scripts: Vec<PathBuf>,
    /// What the step works on, for the spinner a terminal shows while it runs ("a.txt",
    /// "3 files"); a retried task is named by its id without it.
    pub item: Option<String>,
}

impl Invocation {
    /// One variable of the environment the command gets, as text.
    fn var(&self, name: &str) -> Option<String> {
        self.env
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string_lossy().into_owned())
    }
}

/// What a command's ending means; the record itself lives beside the log that keeps it.
impl CommandReport {
    #[must_use]
    pub fn success(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out
    }

    /// "exit 3", "timed out", "killed by SIGKILL", plus the last line of stderr.
    #[must_use]
    pub fn failure_text(&self) -> String {
        let how = self.ending();
        match self.stderr_tail.last().or(self.stdout_tail.last()) {
            Some(line) => format!("{how}: {line}"),
            None => how,
        }
    }

    /// How the command ended, without its output: "exit 3", "timed out after 300 ms",
    /// "killed by SIGKILL"; "no status" when none was heard (a resident step whose exit
    /// status was spent).
    #[must_use]
    pub(crate) fn ending(&self) -> String {
        if self.interrupted {
            "interrupted: memsched ended its process group".to_owned()
        } else if self.timed_out {
            format!("timed out after {} ms", self.duration_ms)
        } else if let Some(code) = self.exit_code {
            format!("exit {code}")
        } else if let Some(signal) = self.signal {
            format!("killed by {}", signal_name(signal))
        } else {
            "no status".to_owned()
        }
    }
}

/// Runs `inv` to completion or timeout. Only failing to start is an error (a program or
/// script others can write is refused before it starts); how the command ended is in the
/// report.
pub(crate) fn run(inv: &Invocation) -> Result<CommandReport> {
    run_judged(inv, &Judged::default())
}

/// [`run`], its start judged only when `judged` (the run's verdicts so far) has not found
/// the same start trustworthy already.
pub(crate) fn run_judged(inv: &Invocation, judged: &Judged) -> Result<CommandReport> {
    let program = inv
        .argv
        .first()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let started = Instant::now();
    let locks: Vec<&Path> = inv
        .lock
        .iter()
        .chain(&inv.step_lock)
        .map(PathBuf::as_path)
        .collect();
    let mut child = spawn_step(&Start {
        argv: &inv.argv,
        cwd: &inv.cwd,
        env: &inv.env,
        scripts: &inv.scripts,
        locks: &locks,
        stdin_piped: inv.stdin.is_some(),
        judged,
    })?;
    let group = Pid::from_raw(i32::try_from(child.id()).expect("pids fit in i32"));
    let (action, task_id) = (inv.var("MEMSCHED_ACTION"), inv.var("MEMSCHED_TASK_ID"));
    let spinner = live::Spinner::start(
        action.as_deref(),
        &program,
        inv.item.as_deref().or(task_id.as_deref()),
    );
    let echo = live::Echo::new(action.as_deref(), &program);
    let entry = registry::register(action, task_id, &program, child.id());

    if let (Some(bytes), Some(mut pipe)) = (inv.stdin.clone(), child.stdin.take()) {
        // A step that exits without reading its stdin closes the pipe: not our error.
        thread::spawn(move || pipe.write_all(&bytes));
    }
    // One thread reads both pipes until they close or the step's leader has exited,
    // whichever is first: a background process the step leaves behind may hold them open
    // for ever, and must cost neither a thread nor a descriptor (issue 9 case 5).
    let (tail_tx, tail_rx) = mpsc::channel();
    let (leader_gone, exited) = std::io::pipe().map_err(|source| Error::Spawn {
        program: program.clone(),
        source,
    })?;
    let pipes = [
        child.stdout.take().map(OwnedFd::from),
        child.stderr.take().map(OwnedFd::from),
    ];
    thread::spawn(move || tail_tx.send(drain(pipes, &leader_gone, echo)));

    let (exit_tx, exit_rx) = crossbeam_channel::bounded(1);
    thread::spawn(move || exit_tx.send(child.wait()));
    let mut timed_out = false;
    let mut interrupted = false;
    let status = select! {
        recv(exit_rx) -> status => status.expect("the waiter thread always sends"),
        recv(entry.abort()) -> _ => {
            interrupted = true;
            end_group(group, &exit_rx).expect("the waiter thread always sends")
        }
        recv(after(inv.timeout)) -> _ => {
            timed_out = true;
            end_group(group, &exit_rx).expect("the waiter thread always sends")
        }
    };
    drop(entry);
    drop(spinner);
    lock::step_ended(&locks);
    let status = status.map_err(|source| Error::Spawn {
        program: program.clone(),
        source,
    })?;
    let duration = started.elapsed();

    // The leader is gone: what it wrote is in the pipes; the reader takes that and stops.
    drop(exited);
    let [stdout_tail, stderr_tail] = tail_rx.recv_timeout(DRAIN_GRACE).unwrap_or_default();
    Ok(CommandReport {
        argv: shown_argv(&inv.argv),
        exit_code: status.code(),
        signal: status.signal(),
        timed_out,
        interrupted,
        duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
        stdout_tail,
        stderr_tail,
    })
}

/// Ends a process group: SIGTERM, then SIGKILL after [`KILL_GRACE`] (or at once when the
/// leader has left, so nothing else of the group lingers). Returns the leader's status,
/// `None` when it was taken from `exit_rx` already.
pub(in crate::run) fn end_group(
    group: Pid,
    exit_rx: &crossbeam_channel::Receiver<std::io::Result<std::process::ExitStatus>>,
) -> Option<std::io::Result<std::process::ExitStatus>> {
    let _ = killpg(group, Signal::SIGTERM);
    let status = exit_rx.recv_timeout(KILL_GRACE);
    let _ = killpg(group, Signal::SIGKILL);
    match status {
        Ok(status) => Some(status),
        Err(RecvTimeoutError::Disconnected) => None,
        Err(RecvTimeoutError::Timeout) => exit_rx.recv().ok(),
    }
}

/// "SIGTERM" for 15; "signal 99" for a number with no name here.
#[must_use]
pub(crate) fn signal_name(signal: i32) -> String {
    Signal::try_from(signal).map_or_else(|_| format!("signal {signal}"), |s| s.as_str().to_owned())
}

pub(in crate::run) fn shown_argv(argv: &[OsString]) -> Vec<String> {
    let mut shown: Vec<String> = argv
        .iter()
        .take(SHOWN_ARGS)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if argv.len() > SHOWN_ARGS {
        shown.push(format!("… ({} more)", argv.len() - SHOWN_ARGS));
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn files_expand_to_one_argument_each_and_keep_their_bytes() {
        let odd = PathBuf::from(OsString::from_vec(b"a b\n\xff.txt".to_vec()));
        let files = [odd.clone(), PathBuf::from("c.txt")];
        let argv = expand(
            &strings(&["step", "--", "{files}", "end"]),
            &Vars {
                files: &files,
                ..Vars::default()
            },
        );
        assert_eq!(
            argv,
            [
                OsString::from("step"),
                "--".into(),
                odd.into_os_string(),
                "c.txt".into(),
                "end".into()
            ]
        );
    }

    #[test]
    fn placeholders_are_replaced_inside_arguments() {
        let vars = Vars {
            relpath: Some(Path::new("x/y.txt")),
            remote: Some("gdrive:memory/x/y.txt"),
            ..Vars::default()
        };
        let argv = expand(
            &strings(&["copyto", "{relpath}", "{remote}", "{x}", "{\"a\":1}", "{"]),
            &vars,
        );
        assert_eq!(
            argv,
            [
                "copyto",
                "x/y.txt",
                "gdrive:memory/x/y.txt",
                "{x}",
                "{\"a\":1}",
                "{"
            ]
            .map(OsString::from)
        );
    }

    /// Whether `pid` is gone (or a zombie waiting to be reaped, which holds nothing).
    fn gone(pid: &str) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit(')')
                .next()
                .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        }
    }

    #[test]
    fn a_timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("grandchild.pid");
        let script = format!("sleep 30 & echo $! > '{}'; wait", pidfile.display());
        let inv = Invocation {
            argv: ["sh", "-c", &script].map(OsString::from).to_vec(),
            cwd: dir.path().to_path_buf(),
            env: Vec::new(),
            stdin: None,
            timeout: Duration::from_millis(300),
            lock: None,
            step_lock: None,
            scripts: Vec::new(),
            item: None,
        };
        let report = run(&inv).unwrap();
        assert!(report.timed_out);
        assert!(!report.success());
        let pid = std::fs::read_to_string(&pidfile).unwrap().trim().to_owned();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !gone(&pid) {
            assert!(
                Instant::now() < deadline,
                "grandchild {pid} outlived the timeout kill"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn output_tails_and_stdin_reach_the_report() {
        let dir = tempfile::tempdir().unwrap();
        let inv = Invocation {
            argv: ["sh", "-c", "cat; echo oops >&2; exit 4"]
                .map(OsString::from)
                .to_vec(),
            cwd: dir.path().to_path_buf(),
            env: Vec::new(),
            stdin: Some(b"one\ntwo\n".to_vec()),
            timeout: Duration::from_secs(10),
            lock: None,
            step_lock: None,
            scripts: Vec::new(),
            item: None,
        };
        let report = run(&inv).unwrap();
        assert_eq!(report.exit_code, Some(4));
        assert_eq!(report.stdout_tail, ["one", "two"]);
        assert_eq!(report.failure_text(), "exit 4: oops");
    }

    #[test]
    fn a_missing_program_is_a_spawn_error_naming_it() {
        let inv = Invocation {
            argv: vec!["/nonexistent/step".into()],
            cwd: PathBuf::from("."),
            env: Vec::new(),
            stdin: None,
            timeout: Duration::from_secs(1),
            lock: None,
            step_lock: None,
            scripts: Vec::new(),
            item: None,
        };
        let e = run(&inv).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/step"));
    }
}
