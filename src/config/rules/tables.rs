//! The typed action tables of watch-rules.toml (`[actions.ingest]`, `[actions.retry]`,
//! `[actions.upload]`, `[actions.watchdog]`), as the actions read them once checked.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use globset::GlobSet;

use super::pass_files::PassFiles;

/// A configured command: an argument vector with placeholders, and its timeout.
#[derive(Debug, Clone)]
pub struct CommandSpec {
    pub argv: Vec<String>,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct IngestConfig {
    pub command: CommandSpec,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub include_set: GlobSet,
    pub exclude_set: GlobSet,
    pub batch_size: usize,
    pub pass_files: PassFiles,
    /// Started once and kept, given each batch as a JSON line on stdin (issue 19);
    /// `pass_files` does not apply then.
    pub resident: Option<Resident>,
    /// A file modified more recently than this is still being written and waits.
    pub settle: Duration,
    /// Record a file whose content is already ingested under another path without
    /// sending it (only for indexes keyed by content; an index keyed by path would never
    /// hold the copy under its own name).
    pub skip_known_content: bool,
    /// Told the memories that are gone (their records are pending removals); `None`:
    /// the records stay and are reported, and the index is not told.
    pub remove: Option<Vec<String>>,
    /// Removals beyond this in one run are held back until a person confirms them (a
    /// vanished or emptied Data folder deletes nothing).
    pub max_remove: RemoveLimit,
}

/// A resident step's settings (`resident = true`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resident {
    /// After this long without a batch its stdin is closed, handing its memory back;
    /// `None`: kept as long as memsched runs.
    pub idle_exit: Option<Duration>,
}

/// How many of the recorded memories one run may remove without a person confirming.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoveLimit {
    /// At most this many.
    Count(usize),
    /// At most this share (in percent) of the recorded memories.
    Percent(u8),
}

impl RemoveLimit {
    /// Whether `removals` of `recorded` memories may go without a confirmation.
    #[must_use]
    pub fn allows(self, removals: usize, recorded: usize) -> bool {
        match self {
            RemoveLimit::Count(n) => removals <= n,
            RemoveLimit::Percent(p) => removals * 100 <= recorded * usize::from(p),
        }
    }
}

impl std::fmt::Display for RemoveLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RemoveLimit::Count(n) => write!(f, "{n}"),
            RemoveLimit::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// When a failed item may be tried again: `initial * factor^(attempts - 1)`, capped at
/// `max`, then spread by up to `jitter` (a fraction) either way.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub initial: Duration,
    pub factor: f64,
    pub max: Duration,
    pub jitter: f64,
}

/// Pauses a step's retries after `failures` consecutive failures with one error class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    pub failures: usize,
    pub cooldown: Duration,
}

#[derive(Debug, Clone)]
pub struct RetryConfig {
    pub command: CommandSpec,
    pub max_attempts: u32,
    /// Tasks run at the same time.
    pub parallel: usize,
    /// Step name -> weight; higher runs first within a priority.
    pub weights: BTreeMap<String, i64>,
    pub backoff: Backoff,
    /// A task `running` for longer than this is taken as crashed and returned to failed.
    pub stuck_after: Duration,
    pub breaker: BreakerConfig,
    /// Done tasks older than this are removed at each retry run; `None` keeps them.
    pub done_keep: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct UploadConfig {
    pub command: CommandSpec,
    pub remote: String,
    /// What every remote must start with, an entry's own included (issue 18): the
    /// `remote_root` key, else the template's literal text up to its last `/` or `:`
    /// before a placeholder (`"memory/"` for `"memory/{relpath}"`, `"drive:"` for
    /// `"drive:{relpath}"`, empty for `"{relpath}"`). Empty or ending in `/` or `:`.
    pub remote_root: String,
    pub max_attempts: u32,
    pub backoff: Backoff,
    /// Globs relative to the pipeline home: matching files are queued when new or changed.
    /// The `set` globs are among them.
    pub sources: Vec<String>,
    pub source_set: GlobSet,
    /// `set`: sources that go up together, in this order (an index, then its side-car),
    /// after every other upload of the run; one failing holds back the rest (issue 19).
    pub set: Vec<String>,
    pub set_globs: GlobSet,
    /// Folders outside the pipeline home whose files may be uploaded (absolute, or
    /// relative to the home). Every other entry must resolve inside the home (issue 10).
    pub allow: Vec<PathBuf>,
    /// Run for an uploaded file whose source is gone, to delete it from the remote
    /// (`rclone deletefile {remote}`); `None`: the remote copy stays. Shares `command`'s
    /// timeout.
    pub remove: Option<CommandSpec>,
    /// Removals beyond this in one run wait for `--confirm-removals` (a vanished index
    /// folder deletes nothing from the drive).
    pub max_remove: RemoveLimit,
    /// `min_interval`: a file uploaded less than this ago waits, queued, until it is over,
    /// then its latest version goes up (a big index rewritten at every save goes up at
    /// most once per interval, issue 19). `None`: no wait.
    pub min_interval: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct WatchdogConfig {
    pub command: Option<CommandSpec>,
    /// Desktop notifications on health getting worse and on tasks dying (needs a session
    /// bus; rate-limited).
    pub notify: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remove_limit_allows_up_to_its_count_or_share() {
        // (limit, removals, recorded, allowed)
        let cases = [
            (RemoveLimit::Count(2), 2, 100, true),
            (RemoveLimit::Count(2), 3, 100, false),
            (RemoveLimit::Count(0), 1, 1, false),
            (RemoveLimit::Percent(50), 1, 2, true),
            (RemoveLimit::Percent(50), 2, 2, false),
            (RemoveLimit::Percent(50), 3, 6, true),
            (RemoveLimit::Percent(100), 6, 6, true),
            (RemoveLimit::Percent(0), 1, 1000, false),
        ];
        for (limit, removals, recorded, allowed) in cases {
            assert_eq!(
                limit.allows(removals, recorded),
                allowed,
                "{limit}: {removals} of {recorded}"
            );
        }
    }
}
