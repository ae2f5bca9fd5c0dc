//! The one error type of memsched and the one table that maps outcomes to exit statuses.

use std::path::PathBuf;

/// The hint for a watch that cannot be set up natively.
pub const LIMIT_HINT: &str = "raise the inotify limits, e.g. \
`echo fs.inotify.max_user_watches=524288 | sudo tee /etc/sysctl.d/40-memsched.conf && sudo sysctl --system`";

/// Exit statuses of memsched. Only [`Exit::code`] turns an outcome into a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Every requested action ran or had nothing to do.
    Ok,
    /// At least one action failed, or a file or stream memsched needed could not be read
    /// or written (an I/O failure).
    ActionFailed,
    /// Bad usage or configuration (clap uses 2 as well).
    Usage,
    /// Another process holds a lock the run needed; nothing else went wrong.
    LockHeld,
    /// SIGINT or SIGTERM ended the run early (130, as shells report Ctrl-C).
    Interrupted,
}

impl Exit {
    /// The process exit status for this outcome.
    #[must_use]
    pub fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::ActionFailed => 1,
            Exit::Usage => 2,
            Exit::LockHeld => 3,
            Exit::Interrupted => 130,
        }
    }
}

/// Everything that can go wrong in memsched, named by what failed and carrying its noun.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no paths.json at {}", path.display())]
    PathsMissing { path: PathBuf },
    #[error("cannot read {}", path.display())]
    ConfigRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A config file that does not parse; `msg` comes from the parser and already points at
    /// the line and column.
    #[error("{}: {msg}", path.display())]
    ConfigParse { path: PathBuf, msg: String },
    #[error("{}:{line}:{col}: {msg}", path.display())]
    ConfigInvalid {
        path: PathBuf,
        line: usize,
        col: usize,
        msg: String,
    },
    #[error("cannot read state file {}", path.display())]
    StateRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}:{col}: state file does not parse, left untouched: {msg}", path.display())]
    StateParse {
        path: PathBuf,
        line: usize,
        col: usize,
        msg: String,
    },
    #[error("{}: state file has an unexpected shape, left untouched: {msg}", path.display())]
    StateShape { path: PathBuf, msg: String },
    #[error("cannot write state file {}", path.display())]
    StateWrite {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A write the file system refused for want of room (ENOSPC) or quota (EDQUOT):
    /// told as what it is, naming the file (issue 21 item 8), not as an I/O error.
    #[error("{} writing {}", if *quota { "disk quota exceeded" } else { "no space left on device" }, path.display())]
    NoSpace { path: PathBuf, quota: bool },
    #[error("cannot use lock file {}", path.display())]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A link where memsched keeps a lock or state file (issue 10): it is never followed,
    /// since its target could be any file the user can write.
    #[error("{} is a symbolic link where memsched keeps its {what}; memsched does not follow links there: replace it with a regular file", path.display())]
    Link { path: PathBuf, what: &'static str },
    #[error("lock {} is held by {}", path.display(), holder_text(*pid))]
    LockHeld { path: PathBuf, pid: Option<u32> },
    #[error("cannot start {program}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot watch {}", path.display())]
    Watch {
        path: PathBuf,
        #[source]
        source: notify::Error,
    },
    #[error("cannot write autostart entry {}", path.display())]
    Autostart {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot scan {}", path.display())]
    Scan {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The ingest step's report (the file named by MEMSCHED_RESULT) cannot be used.
    #[error("the ingest step's report (MEMSCHED_RESULT) {msg}")]
    StepReport { msg: String },
    #[error("cannot install the signal handlers")]
    Signals {
        #[source]
        source: std::io::Error,
    },
    /// The path of memsched's own executable cannot be found (for an autostart entry).
    #[error("cannot find memsched's own executable")]
    OwnExecutable {
        #[source]
        source: std::io::Error,
    },
    /// A file or folder memsched takes commands or folders from that someone else could
    /// write (issue 10 item 3; see trust.rs).
    #[error("{}: {why}; memsched runs commands named there, so only you may write it", path.display())]
    Untrusted {
        path: PathBuf,
        why: String,
        fix: String,
    },
    /// A program or script a command would run that someone else could write (issue 21
    /// item 3; see trust.rs): the command is not run. `what` is "program" or "script"; the
    /// fix is part of the message, since a run records the message alone.
    #[error("{}: {why}; memsched runs no {what} others can write (fix: {fix})", path.display())]
    UntrustedCommand {
        path: PathBuf,
        what: &'static str,
        why: String,
        fix: String,
    },
    /// What a subcommand prints (the manual page) could not be written to stdout: an I/O
    /// failure, not bad usage.
    #[error("cannot write the {what}")]
    Output {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Usage(String),
}

/// "pid 123" or "another process" when the holder did not leave its pid.
#[must_use]
pub fn holder_text(pid: Option<u32>) -> String {
    match pid {
        Some(pid) => format!("pid {pid}"),
        None => "another process".to_owned(),
    }
}

impl Error {
    /// A failed write of the state file at `path`: [`Error::NoSpace`] when the file system
    /// is full or the quota spent, else [`Error::StateWrite`].
    #[must_use]
    pub fn state_write(path: &std::path::Path, source: std::io::Error) -> Error {
        match source.raw_os_error() {
            Some(code) if code == nix::errno::Errno::ENOSPC as i32 => Error::NoSpace {
                path: path.to_path_buf(),
                quota: false,
            },
            Some(code) if code == nix::errno::Errno::EDQUOT as i32 => Error::NoSpace {
                path: path.to_path_buf(),
                quota: true,
            },
            _ => Error::StateWrite {
                path: path.to_path_buf(),
                source,
            },
        }
    }

    /// The exit status this error ends a run with.
    #[must_use]
    pub fn exit(&self) -> Exit {
        match self {
            Error::PathsMissing { .. }
            | Error::ConfigRead { .. }
            | Error::ConfigParse { .. }
            | Error::ConfigInvalid { .. }
            | Error::Untrusted { .. }
            | Error::UntrustedCommand { .. }
            | Error::Usage(_) => Exit::Usage,
            Error::LockHeld { .. } => Exit::LockHeld,
            Error::StateRead { .. }
            | Error::StateParse { .. }
            | Error::StateShape { .. }
            | Error::StateWrite { .. }
            | Error::NoSpace { .. }
            | Error::Lock { .. }
            | Error::Link { .. }
            | Error::Spawn { .. }
            | Error::Watch { .. }
            | Error::Autostart { .. }
            | Error::Scan { .. }
            | Error::StepReport { .. }
            | Error::Signals { .. }
            | Error::OwnExecutable { .. }
            | Error::Output { .. } => Exit::ActionFailed,
        }
    }

    /// A line telling the user how to fix this, where we know it.
    #[must_use]
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::PathsMissing { .. } => Some(
                "pass --paths FILE, set MEMSCHED_PATHS, or run from the folder holding paths.json or one inside it"
                    .to_owned(),
            ),
            Error::LockHeld { path, .. } if path.ends_with("scheduler.lock") => Some(
                "another memsched watcher runs for this paths.json; `memsched --once` can still run beside it"
                    .to_owned(),
            ),
            Error::Watch { .. } => Some(LIMIT_HINT.to_owned()),
            Error::NoSpace { path, .. } => {
                let folder = path.parent().unwrap_or(path).display();
                Some(format!(
                    "free space where {folder} lies (df -h {folder}); nothing recorded is lost, and what was not is done again by the next run"
                ))
            }
            Error::Untrusted { fix, .. } => Some(fix.clone()),
            Error::StateParse { .. } | Error::StateShape { .. } => Some(
                "fix or move the file by hand; memsched never overwrites a file it cannot read"
                    .to_owned(),
            ),
            _ => None,
        }
    }

    /// The whole chain on one line: `a: b: c`.
    #[must_use]
    pub fn chain(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
    }
}

/// Line and column (both 1-based) of byte `offset` in `text`.
#[must_use]
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |s| s.chars().count()) + 1;
    (line, col)
}

/// serde_json's message without its " at line L column C" suffix (we print those ourselves).
#[must_use]
pub fn json_message(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
    }

    #[test]
    fn exit_codes_are_distinct() {
        let codes = [Exit::Ok, Exit::ActionFailed, Exit::Usage, Exit::LockHeld].map(Exit::code);
        assert_eq!(codes, [0, 1, 2, 3]);
    }

    #[test]
    fn a_write_the_disk_had_no_room_for_is_told_so_naming_the_file() {
        let path = std::path::Path::new("/s/ingest_hash.json.journal");
        let full = std::io::Error::from_raw_os_error(nix::errno::Errno::ENOSPC as i32);
        let e = Error::state_write(path, full);
        assert_eq!(
            e.chain(),
            "no space left on device writing /s/ingest_hash.json.journal"
        );
        assert!(e.hint().unwrap().contains("df -h /s"));
        let quota = std::io::Error::from_raw_os_error(nix::errno::Errno::EDQUOT as i32);
        assert!(
            Error::state_write(path, quota)
                .chain()
                .starts_with("disk quota exceeded writing")
        );
        let other = std::io::Error::from_raw_os_error(nix::errno::Errno::EIO as i32);
        assert!(
            Error::state_write(path, other)
                .chain()
                .starts_with("cannot write state file")
        );
    }
}
