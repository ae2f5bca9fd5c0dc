//! The log on stderr: its level (RUST_LOG, or -v/-q, which win when given), its colour
//! (--color, NO_COLOR), and journald priorities (`<3>` …) when stderr is the journal, so
//! `journalctl --user -u memsched -p warning` shows warnings and errors only.

use std::io::Write;
use std::os::unix::fs::MetadataExt;

use log::{Level, LevelFilter};

/// How the command line asks the log to look.
pub struct LogOptions {
    /// The watcher narrates what it does (info); one-shot runs print a summary instead.
    pub watching: bool,
    /// -v count.
    pub verbose: u8,
    /// -q count.
    pub quiet: u8,
    /// Whether to colour stderr (--color against whether it is a terminal).
    pub color: bool,
}

/// Sets up the logger.
pub fn init(options: &LogOptions) {
    let LogOptions {
        watching,
        verbose,
        quiet,
        color,
    } = *options;
    let default = if watching { "info" } else { "warn" };
    let mut builder = match level(verbose, quiet) {
        Some(level) => {
            // -v is for memsched's own debug; its libraries (globset, notify) speak only
            // of warnings and errors, or their internals flood the screen.
            let mut b = env_logger::Builder::new();
            b.filter_level(level.min(LevelFilter::Warn));
            b.filter_module("memsched", level);
            b
        }
        None => {
            env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default))
        }
    };
    if journal_stream() {
        // journald stamps time and unit itself; the prefix is the syslog priority.
        builder
            .format(|buf, record| writeln!(buf, "<{}>{}", priority(record.level()), record.args()));
        builder.write_style(env_logger::WriteStyle::Never);
    } else if color {
        builder.write_style(env_logger::WriteStyle::Always);
    } else {
        builder.write_style(env_logger::WriteStyle::Never);
    }
    builder.init();
}

/// The level -v/-q ask for, if they are given: -v debug, -vv trace, -q errors, -qq none.
fn level(verbose: u8, quiet: u8) -> Option<LevelFilter> {
    match (verbose, quiet) {
        (0, 0) => None,
        (1, _) => Some(LevelFilter::Debug),
        (2.., _) => Some(LevelFilter::Trace),
        (0, 1) => Some(LevelFilter::Error),
        (0, 2..) => Some(LevelFilter::Off),
    }
}

/// The syslog priority journald files a line under (sd-daemon(3)).
fn priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// Whether stderr is the journal: systemd sets JOURNAL_STREAM to the device and inode of
/// the stream it connected, and only that stream counts (a redirect makes it another).
#[must_use]
pub fn journal_stream() -> bool {
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.to_str().and_then(|v| v.split_once(':')) else {
        return false;
    };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    dev.parse() == Ok(meta.dev()) && ino.parse() == Ok(meta.ino())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_choose_the_level_and_journald_gets_syslog_priorities() {
        assert_eq!(level(0, 0), None);
        assert_eq!(level(1, 0), Some(LevelFilter::Debug));
        assert_eq!(level(3, 0), Some(LevelFilter::Trace));
        assert_eq!(level(0, 1), Some(LevelFilter::Error));
        assert_eq!(level(0, 2), Some(LevelFilter::Off));
        assert_eq!(priority(Level::Error), 3);
        assert_eq!(priority(Level::Warn), 4);
    }
}
