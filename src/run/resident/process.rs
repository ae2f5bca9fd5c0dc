//! One resident step's process: started in its own process group holding its action's
//! lock, fed request lines by a writer thread (closing it is EOF on the step's stdin),
//! its stdout split into answer lines and its stderr kept as a bounded tail, its exit
//! heard by a waiter thread.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, TryRecvError};
use nix::unistd::Pid;

use crate::error::Result;
use crate::run::runner::{Judged, Start, Tail, end_group, spawn_step};

/// The longest answer line read; a longer one is no answer (and the step is ended).
const MAX_ANSWER: usize = 64 * 1024 * 1024;
/// Bytes read from the step's output at a time.
const READ_CHUNK: usize = 64 * 1024;
/// After EOF on its stdin, how long a step has to exit before its group is ended.
pub(super) const EXIT_GRACE: Duration = Duration::from_secs(5);

/// A line the step wrote on stdout.
#[derive(Debug)]
pub(super) enum Line {
    Text(Vec<u8>),
    /// Longer than [`MAX_ANSWER`]: cut, and no answer.
    TooLong,
}

/// What starts a resident step, and what identifies it: the same argument vector in the
/// same folder under the same lock is the same step.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    pub argv: Vec<OsString>,
    pub cwd: PathBuf,
    pub env: Vec<(&'static str, OsString)>,
    /// The action lock the step holds for its whole life (this process holds it too).
    pub lock: PathBuf,
    /// Close its stdin after this long without a batch.
    pub idle_exit: Option<Duration>,
    /// Scripts its arguments name, judged with its program before it starts (see
    /// `runner::program::scripts`), as a one-shot step's are.
    pub scripts: Vec<PathBuf>,
}

/// A running resident step.
pub(super) struct Process {
    pub(super) pid: u32,
    /// Request lines to write; dropping it closes the step's stdin.
    stdin: Option<mpsc::Sender<Vec<u8>>>,
    pub(super) lines: Receiver<Line>,
    pub(super) exit: Receiver<std::io::Result<ExitStatus>>,
    stderr: Arc<Mutex<Tail>>,
    pub(super) last_used: Instant,
}

impl Process {
    /// Starts `spec`'s command holding its lock (handed on as one-shot steps get theirs).
    pub(super) fn start(spec: &Spec) -> Result<Process> {
        // It starts as a one-shot step does: no program or script others can write runs
        // (issue 21 item 3), and the lock names its group, so a helper it leaves behind
        // is told from it once memsched and the group are gone (issue 18 item 12).
        let mut child = spawn_step(&Start {
            argv: &spec.argv,
            cwd: &spec.cwd,
            env: &spec.env,
            scripts: &spec.scripts,
            locks: &[spec.lock.as_path()],
            stdin_piped: true,
            // Started once for many batches: judged at each start.
            judged: &Judged::default(),
        })?;
        let (stdin_tx, stdin_rx) = mpsc::channel::<Vec<u8>>();
        let mut pipe = child.stdin.take().expect("stdin is piped");
        thread::spawn(move || {
            for line in stdin_rx {
                if pipe.write_all(&line).and_then(|()| pipe.flush()).is_err() {
                    break;
                }
            }
            // The pipe drops here: EOF for the step.
        });
        let (lines_tx, lines) = crossbeam_channel::unbounded();
        let stdout = child.stdout.take().expect("stdout is piped");
        thread::spawn(move || split_lines(stdout, &lines_tx));
        let stderr = Arc::new(Mutex::new(Tail::default()));
        let mut err_pipe = child.stderr.take().expect("stderr is piped");
        let tail = Arc::clone(&stderr);
        thread::spawn(move || {
            let mut buf = vec![0; READ_CHUNK];
            while let Ok(n) = err_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                tail.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(&buf[..n]);
            }
        });
        let pid = child.id();
        let (exit_tx, exit) = crossbeam_channel::bounded(1);
        thread::spawn(move || exit_tx.send(child.wait()));
        Ok(Process {
            pid,
            stdin: Some(stdin_tx),
            lines,
            exit,
            stderr,
            last_used: Instant::now(),
        })
    }

    /// Its process group.
    pub(super) fn group(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.pid).expect("pids fit in i32"))
    }

    /// Ends its whole process group (see [`end_group`]). Its exit status, unless it was
    /// taken already.
    pub(super) fn end(&self) -> Option<ExitStatus> {
        end_group(self.group(), &self.exit).and_then(Result::ok)
    }

    /// Writes one request line; `false` when the writer is gone (the step closed stdin).
    pub(super) fn send(&self, line: Vec<u8>) -> bool {
        self.stdin.as_ref().is_some_and(|tx| tx.send(line).is_ok())
    }

    /// Whether it has exited (its status is then spent).
    pub(super) fn has_exited(&self) -> bool {
        !matches!(self.exit.try_recv(), Err(TryRecvError::Empty))
    }

    /// The stderr lines written since the last call.
    pub(super) fn take_stderr(&self) -> Vec<String> {
        std::mem::take(&mut *self.stderr.lock().unwrap_or_else(PoisonError::into_inner)).finish()
    }

    /// Ends it the gentle way: EOF on stdin, then its group ended if it has not exited
    /// within [`EXIT_GRACE`].
    pub(super) fn close(mut self) {
        self.stdin = None;
        match self.exit.recv_timeout(EXIT_GRACE) {
            Ok(_) | Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {}
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                log::warn!(
                    "the resident step (pid {}) did not exit within {} s of EOF on its stdin: its process group is ended",
                    self.pid,
                    EXIT_GRACE.as_secs()
                );
                self.end();
            }
        }
    }
}

/// Reads `pipe` to its end, sending each line (without its `\n`).
fn split_lines(mut pipe: impl Read, out: &crossbeam_channel::Sender<Line>) {
    let mut buf = vec![0; READ_CHUNK];
    let mut line = Vec::new();
    let mut too_long = false;
    loop {
        let n = match pipe.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let mut chunk = &buf[..n];
        while let Some(at) = chunk.iter().position(|b| *b == b'\n') {
            let sent = if too_long {
                Line::TooLong
            } else {
                line.extend_from_slice(&chunk[..at]);
                Line::Text(std::mem::take(&mut line))
            };
            too_long = false;
            line.clear();
            if out.send(sent).is_err() {
                return;
            }
            chunk = &chunk[at + 1..];
        }
        if !too_long {
            line.extend_from_slice(chunk);
            if line.len() > MAX_ANSWER {
                too_long = true;
                line = Vec::new();
            }
        }
    }
}

/// One request line: `{"id": N, "files": [...]}\n` (or `"remove"`). A name that is not
/// UTF-8 is spelt as Python's `surrogateescape` reads it (each stray byte a lone
/// `\udcXX`), so `os.fsencode` gives the step its bytes back.
#[must_use]
pub(crate) fn request_line(id: u64, key: &str, files: &[&Path]) -> Vec<u8> {
    let mut out = format!("{{\"id\": {id}, \"{key}\": [").into_bytes();
    for (i, file) in files.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        json_string(file.as_os_str().as_bytes(), &mut out);
    }
    out.extend_from_slice(b"]}\n");
    out
}

/// `bytes` as a JSON string, stray bytes as lone surrogates.
fn json_string(mut bytes: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    loop {
        match std::str::from_utf8(bytes) {
            Ok(text) => {
                push_escaped(text, out);
                break;
            }
            Err(e) => {
                let (good, rest) = bytes.split_at(e.valid_up_to());
                push_escaped(std::str::from_utf8(good).expect("checked"), out);
                let bad = e.error_len().unwrap_or(rest.len());
                for b in &rest[..bad] {
                    out.extend_from_slice(format!("\\udc{b:02x}").as_bytes());
                }
                bytes = &rest[bad..];
            }
        }
    }
    out.push(b'"');
}

fn push_escaped(text: &str, out: &mut Vec<u8>) {
    let quoted = serde_json::to_string(text).expect("a str always serialises");
    out.extend_from_slice(&quoted.as_bytes()[1..quoted.len() - 1]);
}
