//! Every default of watch-rules.toml, typed, in one place: the rules fill in what a file
//! leaves out from here, and health judges with the same values when an action is not
//! configured. The README's configuration reference lists the same values.

use std::time::Duration;

use super::tables::{Backoff, RemoveLimit};

const fn minutes(n: u64) -> Duration {
    Duration::from_secs(n * 60)
}

/// Quiet time after the last change before the watcher's run.
pub(crate) const DEBOUNCE: Duration = Duration::from_millis(500);
/// Longest a change waits for its run, however busy the folder.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(10);
/// The periodic tick: watchdog plus a full reconcile.
pub(crate) const TICK: Duration = minutes(15);
/// Runs kept in scheduler_log.json.
pub(crate) const LOG_KEEP: usize = 200;
/// While this file (relative to data_dir) exists, the watcher defers its runs.
pub(crate) const PAUSE_FILE: &str = ".memsched-pause";

pub(crate) const INGEST_TIMEOUT: Duration = minutes(30);
pub(crate) const INGEST_INCLUDE: &[&str] = &["**/*.txt"];
/// Files skipped unless `exclude` says otherwise: hidden files and folders, editor swap,
/// lock and backup files, and partial downloads.
pub(crate) const INGEST_EXCLUDE: &[&str] = &[
    "**/.*",
    "**/.*/**",
    "**/*~",
    "**/#*#",
    "**/*.swp",
    "**/*.swo",
    "**/*.swx",
    "**/*.tmp",
    "**/*.bak",
    "**/*.part",
    "**/*.crdownload",
];
/// Files per batch when their names go in argv (`{files}`): the kernel's ARG_MAX splits
/// long lists besides, so this keeps each step run a modest size.
pub(crate) const BATCH_SIZE: usize = 64;
/// Files per batch when their names go on stdin, in a list file or in a resident step's
/// JSON line: no argument limit applies, and a step that loads a model or an index pays
/// that per batch, so a 2,000-file import is one batch (issue 19 item 2); the step's
/// `timeout` bounds its time.
pub(crate) const BATCH_SIZE_UNBOUNDED: usize = 10_000;
/// A file modified more recently than this is still being written and waits.
pub(crate) const SETTLE: Duration = Duration::from_secs(2);
/// Half the memories at once is no everyday deletion; a vanished folder is all of them.
pub(crate) const MAX_REMOVE: RemoveLimit = RemoveLimit::Percent(50);

pub(crate) const RETRY_TIMEOUT: Duration = minutes(10);
/// Attempts of a task or an upload before it is dead or given up.
pub(crate) const MAX_ATTEMPTS: u32 = 5;
pub(crate) const PARALLEL: usize = 1;
/// A task `running` longer than this is taken as crashed.
pub(crate) const STUCK_AFTER: Duration = minutes(60);
pub(crate) const BREAKER_FAILURES: usize = 3;
pub(crate) const BREAKER_COOLDOWN: Duration = minutes(15);

pub(crate) const UPLOAD_TIMEOUT: Duration = minutes(10);
pub(crate) const WATCHDOG_TIMEOUT: Duration = minutes(1);
/// Desktop notifications from the watchdog (they need a session bus, which cron lacks).
pub(crate) const NOTIFY: bool = true;
/// At most one desktop notification in this long.
pub(crate) const NOTIFY_GAP: Duration = minutes(10);

pub(crate) const BACKOFF_INITIAL: Duration = Duration::from_secs(30);
pub(crate) const BACKOFF_FACTOR: f64 = 2.0;
pub(crate) const BACKOFF_MAX: Duration = minutes(60);
pub(crate) const BACKOFF_JITTER: f64 = 0.2;

// The range each value must lie in, checked when the rules load (issue 10 item 4): a value
// outside is refused with its file, line and column, so nothing later can overflow a
// time, spin on a zero tick or hold a year-long debounce. The README lists the same.

const fn days(n: u64) -> Duration {
    Duration::from_secs(n * 86_400)
}

pub(crate) const DEBOUNCE_RANGE: (Duration, Duration) = (Duration::ZERO, minutes(60));
/// `max_wait` is also at least `debounce`.
pub(crate) const MAX_WAIT_RANGE: (Duration, Duration) = (Duration::ZERO, days(1));
pub(crate) const TICK_RANGE: (Duration, Duration) = (Duration::from_secs(1), days(1));
pub(crate) const SETTLE_RANGE: (Duration, Duration) = (Duration::ZERO, minutes(60));
/// From 100ms, so a test can time a step out quickly.
pub(crate) const TIMEOUT_RANGE: (Duration, Duration) = (Duration::from_millis(100), days(7));
pub(crate) const BACKOFF_RANGE: (Duration, Duration) = (Duration::ZERO, days(30));
pub(crate) const STUCK_AFTER_RANGE: (Duration, Duration) = (Duration::from_secs(1), days(365));
/// How long a done task is kept when `done_keep` is set: from a minute to ten years.
pub(crate) const DONE_KEEP_RANGE: (Duration, Duration) = (minutes(1), days(3650));
/// A resident step's quiet spell before its stdin is closed (issue 19).
pub(crate) const IDLE_EXIT_RANGE: (Duration, Duration) = (Duration::from_millis(100), days(7));
/// `[actions.upload] min_interval`: `0s` (no wait) to a day.
pub(crate) const MIN_INTERVAL_RANGE: (Duration, Duration) = (Duration::ZERO, days(1));
pub(crate) const COOLDOWN_RANGE: (Duration, Duration) = (Duration::ZERO, days(30));
pub(crate) const LOG_KEEP_RANGE: (usize, usize) = (1, 100_000);
pub(crate) const BATCH_SIZE_RANGE: (usize, usize) = (1, 100_000);
pub(crate) const PARALLEL_RANGE: (usize, usize) = (1, 64);
pub(crate) const MAX_ATTEMPTS_RANGE: (usize, usize) = (1, 10_000);
pub(crate) const BREAKER_FAILURES_RANGE: (usize, usize) = (1, 10_000);

impl Default for Backoff {
    /// The backoff of a table that sets none (`{ initial = "30s", factor = 2.0, max = "1h",
    /// jitter = 0.2 }`).
    fn default() -> Backoff {
        Backoff {
            initial: BACKOFF_INITIAL,
            factor: BACKOFF_FACTOR,
            max: BACKOFF_MAX,
            jitter: BACKOFF_JITTER,
        }
    }
}
