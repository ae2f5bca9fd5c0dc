//! The ingest decision for one data file, pure: wait for it (still being written), send
//! it to the step, record it without sending (content known), or leave it (its failure is
//! the retry action's, or dead), from what the manifest, the queue and the watcher know.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::hash::Hashed;
use crate::config::rules::RemoveLimit;
use crate::model::action::Action;
use crate::model::clock::Clock;
use crate::model::task_status::TaskStatus;
use crate::state::ingest_hash::Digest;
use crate::state::stat::Stat;
use crate::state::task_queue::TaskQueue;

/// What the plan does with one file it looked at closely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Decision {
    /// Content not yet ingested: send it to the step. `modified`: an older content of
    /// the same path was ingested.
    Send { modified: bool },
    /// Record it without running the step, and why.
    Record(Known),
    /// Record it once the file with the same content in this run (its key) is done.
    RecordAfter(String),
    /// Its earlier failure is a task (this id) the retry action owns.
    LeaveToRetry(String),
    /// Its task (this id) is dead: changing the file sends it again.
    LeaveGivenUp(String),
}

/// Why a file's content could not be taken from a read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Unread {
    /// It changed while it was read: it is still being written, and waits.
    ChangedWhileRead,
    /// It could not be read (the error).
    Failed(String),
}

/// Why a file is recorded without running the step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Known {
    /// Its content is what was recorded for it; only its stat changed (a touch, a copy back).
    Unmodified,
    /// The same content is already recorded under another path.
    SameContentAs(String),
    /// The retry action re-ran its failed ingest and the task (this id) is done.
    DoneByRetry(String),
    /// Its removal was pending (not yet confirmed by the step, so the index still holds
    /// it) and it came back as it was: kept, nothing sent, nothing removed.
    Back,
}

/// What a file whose record is a pending removal (its file was found gone) means when it
/// is found again with the recorded content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Back {
    /// A `remove` step is configured and has not confirmed the removal: the index still
    /// holds the memory, so it is kept as it is.
    Kept,
    /// No `remove` step: the index was never told, but one that drops the chunks of gone
    /// files may have lost it; a restored memory is sent again rather than lost.
    Resend,
}

/// What to do with the memories a run found gone (records whose file is not there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Removals {
    /// No `remove` command: report them, leave the records (until `memsched forget`).
    LeaveAlone,
    /// Tell the `remove` step.
    Tell,
    /// Hold them back until a person confirms, and why.
    Hold(String),
}

/// The removal policy for `gone` of `recorded` memories, `net` of them beyond the paths
/// new in this run (a rename is no loss): a `remove` step is told them unless they are more than `limit`
/// allows, or the whole of data_dir looks empty (`emptied`: a walk found no memory at
/// all), which only a person's `confirmed` lets through. Syncthing's folder marker and
/// rsync's `--max-delete` are the models.
pub(super) fn removals(
    gone: usize,
    net: usize,
    recorded: usize,
    emptied: bool,
    remove_configured: bool,
    limit: RemoveLimit,
    confirmed: bool,
) -> Removals {
    if !remove_configured || gone == 0 {
        return Removals::LeaveAlone;
    }
    if confirmed {
        return Removals::Tell;
    }
    if emptied {
        return Removals::Hold(
            "data_dir holds no memory at all (a disk unmounted, or a sync tool emptying it?)"
                .to_owned(),
        );
    }
    if !limit.allows(net, recorded) {
        return Removals::Hold(format!(
            "{gone} of {recorded} recorded memories are gone at once, more than max_remove ({limit})"
        ));
    }
    Removals::Tell
}

/// The `ingest` task a file's earlier failure made.
#[derive(Debug)]
pub(super) struct IngestTask<'a> {
    pub(super) id: &'a str,
    pub(super) status: TaskStatus,
    /// The file's content hash when it failed.
    pub(super) hash: Option<&'a str>,
}

/// Ingest tasks by file key.
pub(super) fn open_tasks(queue: &TaskQueue) -> HashMap<&str, IngestTask<'_>> {
    queue
        .tasks()
        .filter(|t| t.step() == Some(Action::Ingest.name()))
        .filter_map(|t| {
            let task = IngestTask {
                id: t.id()?,
                status: t.status()?,
                hash: t.hash(),
            };
            Some((t.file()?, task))
        })
        .collect()
}

/// Whether a file is old enough to be read, judged by its mtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Age {
    /// Older than `settle`, or its writer was heard closing it: read it.
    Settled,
    /// Its mtime is ahead of the clock by more than `settle` (this much): a camera's or
    /// phone's clock, tar's "time stamp in the future". Its age says nothing of a writer,
    /// and waiting for it would wait until that date, so it is read now, saying so.
    Ahead(Duration),
    /// Younger than `settle`: still being written, it waits (why).
    Young(String),
}

/// Whether a file whose stat is `stat` must wait before it is read: younger than
/// `settle`, unless the watcher heard its writer finish (`closed`), when it is complete
/// whatever its mtime says. An mtime ahead of the clock by no more than `settle` (a
/// network file system's clock a little off) waits as a young file does; one further
/// ahead is [`Age::Ahead`].
pub(super) fn age(clock: &dyn Clock, stat: Stat, settle: Duration, closed: bool) -> Age {
    if closed {
        return Age::Settled;
    }
    let now = clock.now();
    let mtime = mtime_of(stat);
    match now.duration_since(mtime) {
        Ok(age) if age >= settle => Age::Settled,
        Ok(age) => Age::Young(format!(
            "modified {} ago, waits until it is {} old",
            humantime::format_duration(round_ms(age)),
            humantime::format_duration(settle)
        )),
        Err(ahead) if ahead.duration() > settle => Age::Ahead(ahead.duration()),
        Err(ahead) => Age::Young(format!(
            "modified {} ahead of the clock, waits until it is {} old",
            humantime::format_duration(round_ms(ahead.duration())),
            humantime::format_duration(settle)
        )),
    }
}

/// The content hash a read of a file whose scan found `stat` gave, or why there is none.
pub(super) fn read_outcome(stat: Stat, read: std::io::Result<Hashed>) -> Result<Digest, Unread> {
    match read {
        Ok(Hashed { after, .. }) if after != Some(stat) => Err(Unread::ChangedWhileRead),
        Ok(Hashed { hash, .. }) => Ok(hash),
        Err(e) => Err(Unread::Failed(e.to_string())),
    }
}

/// What is known of a file's content besides the file itself.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Seen<'a> {
    /// Whether ingest_hash.json has a record of this path.
    pub(super) has_record: bool,
    /// The content hash that record holds (`None` without one, or when it does not parse).
    pub(super) recorded: Option<Digest>,
    /// The ingest task this path's earlier failure made, whatever content it failed on.
    pub(super) task: Option<&'a IngestTask<'a>>,
    /// Another path recorded with this content (looked up only with
    /// `skip_known_content`).
    pub(super) recorded_as: Option<&'a str>,
    /// The key of a file with this content this plan already sends (only with
    /// `skip_known_content`).
    pub(super) sending_as: Option<&'a str>,
    /// Set when the record is a pending removal (its file was found gone): what finding
    /// the file again with its recorded content means.
    pub(super) back: Option<Back>,
}

/// The decision for a file read whole with content `hash`. Its own record decides first,
/// then a task for the same content, then the same content elsewhere.
pub(super) fn decide(hash: Digest, seen: &Seen<'_>) -> Decision {
    if seen.recorded == Some(hash) {
        return match seen.back {
            None => Decision::Record(Known::Unmodified),
            Some(Back::Kept) => Decision::Record(Known::Back),
            Some(Back::Resend) => Decision::Send { modified: false },
        };
    }
    if let Some(task) = seen
        .task
        .filter(|t| t.hash.and_then(Digest::parse) == Some(hash))
    {
        let id = task.id.to_owned();
        return match task.status {
            TaskStatus::Done => Decision::Record(Known::DoneByRetry(id)),
            TaskStatus::Dead => Decision::LeaveGivenUp(id),
            TaskStatus::Pending
            | TaskStatus::Running
            | TaskStatus::Failed
            | TaskStatus::Other(_) => Decision::LeaveToRetry(id),
        };
    }
    if let Some(other) = seen.recorded_as {
        // The index is keyed by content, so the copy is already in it.
        return Decision::Record(Known::SameContentAs(other.to_owned()));
    }
    if let Some(original) = seen.sending_as {
        return Decision::RecordAfter(original.to_owned());
    }
    Decision::Send {
        modified: seen.has_record,
    }
}

fn mtime_of(stat: Stat) -> SystemTime {
    let ns = stat.mtime_ns;
    let d = Duration::from_nanos(ns.unsigned_abs());
    if ns >= 0 {
        UNIX_EPOCH + d
    } else {
        UNIX_EPOCH.checked_sub(d).unwrap_or(UNIX_EPOCH)
    }
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::model::clock::Frozen;

    fn digest(n: u8) -> Digest {
        Digest([n; 32])
    }

    fn task(status: TaskStatus, hash: &str) -> IngestTask<'_> {
        IngestTask {
            id: "ingest:a.txt",
            status,
            hash: Some(hash),
        }
    }

    #[test]
    // One row per case: the table is the test.
    #[allow(clippy::too_many_lines)]
    fn a_read_file_is_sent_recorded_or_left() {
        let (this, other) = (digest(1), digest(2));
        let (this_text, other_text) = (this.text(), other.text());
        let failed = task(TaskStatus::Failed, &this_text);
        let done = task(TaskStatus::Done, &this_text);
        let dead = task(TaskStatus::Dead, &this_text);
        let stale = task(TaskStatus::Failed, &other_text);
        let id = || "ingest:a.txt".to_owned();
        let none = Seen::default();
        let recorded = |hash| Seen {
            has_record: true,
            recorded: Some(hash),
            ..Seen::default()
        };
        // (case, what is known, decision)
        let cases: Vec<(&str, Seen<'_>, Decision)> = vec![
            ("new content", none, Decision::Send { modified: false }),
            (
                "a pending removal back as it was, a remove step configured",
                Seen {
                    back: Some(Back::Kept),
                    ..recorded(this)
                },
                Decision::Record(Known::Back),
            ),
            (
                "a pending removal back as it was, no remove step",
                Seen {
                    back: Some(Back::Resend),
                    ..recorded(this)
                },
                Decision::Send { modified: false },
            ),
            (
                "a pending removal back with other content",
                Seen {
                    back: Some(Back::Kept),
                    ..recorded(other)
                },
                Decision::Send { modified: true },
            ),
            (
                "content changed since its record",
                recorded(other),
                Decision::Send { modified: true },
            ),
            (
                "a record whose hash does not parse",
                Seen {
                    has_record: true,
                    ..none
                },
                Decision::Send { modified: true },
            ),
            (
                "only its stat changed",
                recorded(this),
                Decision::Record(Known::Unmodified),
            ),
            (
                "its own record decides before a task",
                Seen {
                    task: Some(&failed),
                    ..recorded(this)
                },
                Decision::Record(Known::Unmodified),
            ),
            (
                "failed before: retry's",
                Seen {
                    task: Some(&failed),
                    ..none
                },
                Decision::LeaveToRetry(id()),
            ),
            (
                "retry finished it",
                Seen {
                    task: Some(&done),
                    ..none
                },
                Decision::Record(Known::DoneByRetry(id())),
            ),
            (
                "its task is dead",
                Seen {
                    task: Some(&dead),
                    ..none
                },
                Decision::LeaveGivenUp(id()),
            ),
            (
                "a task for other content",
                Seen {
                    task: Some(&stale),
                    ..none
                },
                Decision::Send { modified: false },
            ),
            (
                "the same content recorded elsewhere",
                Seen {
                    recorded_as: Some("b.txt"),
                    sending_as: Some("c.txt"),
                    ..none
                },
                Decision::Record(Known::SameContentAs("b.txt".to_owned())),
            ),
            (
                "a twin sent in this run",
                Seen {
                    sending_as: Some("c.txt"),
                    ..none
                },
                Decision::RecordAfter("c.txt".to_owned()),
            ),
        ];
        for (case, seen, expected) in cases {
            assert_eq!(decide(this, &seen), expected, "{case}");
        }
    }

    #[test]
    fn a_young_file_waits_unless_its_writer_closed_it() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        let clock = Frozen(now);
        let settle = Duration::from_secs(2);
        let modified = |secs_ago: i64| Stat {
            size: 1,
            mtime_ns: (1_000 - secs_ago) * 1_000_000_000,
            inode: 1,
            ctime_ns: None,
        };
        // (case, mtime, writer heard closing it, waits)
        let cases = [
            ("old enough", modified(5), false, false),
            ("just settled", modified(2), false, false),
            ("too young", modified(1), false, true),
            ("too young but closed", modified(1), true, false),
            ("modified this very moment", modified(0), false, true),
            ("a second ahead of the clock", modified(-1), false, true),
        ];
        for (case, stat, closed, waits_expected) in cases {
            let age = age(&clock, stat, settle, closed);
            assert_eq!(
                matches!(age, Age::Young(_)),
                waits_expected,
                "{case}: {age:?}"
            );
        }
        assert_eq!(
            age(&clock, modified(1), settle, false),
            Age::Young("modified 1s ago, waits until it is 2s old".to_owned())
        );
        assert_eq!(
            age(&clock, modified(-1), settle, false),
            Age::Young("modified 1s ahead of the clock, waits until it is 2s old".to_owned())
        );
    }

    #[test]
    fn an_mtime_far_ahead_of_the_clock_is_read_at_once_not_waited_for() {
        let clock = Frozen(UNIX_EPOCH + Duration::from_secs(1_000));
        let settle = Duration::from_secs(2);
        let in_a_year = Stat {
            size: 1,
            mtime_ns: (1_000 + 365 * 86_400) * 1_000_000_000,
            inode: 1,
            ctime_ns: None,
        };
        assert_eq!(
            age(&clock, in_a_year, settle, false),
            Age::Ahead(Duration::from_secs(365 * 86_400))
        );
        assert_eq!(age(&clock, in_a_year, settle, true), Age::Settled);
        assert_eq!(
            age(&clock, in_a_year, Duration::ZERO, false),
            Age::Ahead(Duration::from_secs(365 * 86_400))
        );
    }

    #[test]
    fn a_read_gives_the_hash_only_when_the_file_held_still() {
        let stat = Stat {
            size: 3,
            mtime_ns: 7,
            inode: 9,
            ctime_ns: None,
        };
        let grown = Stat { size: 4, ..stat };
        let read = |after| {
            Ok(Hashed {
                hash: digest(1),
                after,
            })
        };
        assert_eq!(read_outcome(stat, read(Some(stat))), Ok(digest(1)));
        assert_eq!(
            read_outcome(stat, read(Some(grown))),
            Err(Unread::ChangedWhileRead)
        );
        assert_eq!(
            read_outcome(stat, read(None)),
            Err(Unread::ChangedWhileRead)
        );
        let denied = read_outcome(stat, Err(std::io::ErrorKind::PermissionDenied.into()));
        assert!(matches!(denied, Err(Unread::Failed(_))), "{denied:?}");
    }

    #[test]
    // One row per case: the table is the test.
    #[allow(clippy::too_many_lines)]
    fn gone_memories_are_told_held_or_left_alone() {
        let half = RemoveLimit::Percent(50);
        let hold = |why: &str| Removals::Hold(why.to_owned());
        // (case, gone, net of new paths, recorded, emptied, remove configured, limit,
        // confirmed, policy)
        let cases = [
            (
                "nothing gone",
                0,
                0,
                5,
                false,
                true,
                half,
                false,
                Removals::LeaveAlone,
            ),
            (
                "no remove step",
                1,
                1,
                5,
                false,
                false,
                half,
                false,
                Removals::LeaveAlone,
            ),
            (
                "one of five",
                1,
                1,
                5,
                false,
                true,
                half,
                false,
                Removals::Tell,
            ),
            (
                "a rename of the only memory",
                1,
                0,
                1,
                false,
                true,
                half,
                false,
                Removals::Tell,
            ),
            (
                "three of five",
                3,
                3,
                5,
                false,
                true,
                half,
                false,
                hold("3 of 5 recorded memories are gone at once, more than max_remove (50%)"),
            ),
            (
                "data_dir emptied",
                2,
                2,
                2,
                true,
                true,
                RemoveLimit::Percent(100),
                false,
                hold(
                    "data_dir holds no memory at all (a disk unmounted, or a sync tool emptying it?)",
                ),
            ),
            (
                "emptied, confirmed",
                2,
                2,
                2,
                true,
                true,
                half,
                true,
                Removals::Tell,
            ),
            (
                "over a count, confirmed",
                9,
                9,
                10,
                false,
                true,
                RemoveLimit::Count(2),
                true,
                Removals::Tell,
            ),
        ];
        for (case, gone, net, recorded, emptied, configured, limit, confirmed, policy) in cases {
            assert_eq!(
                removals(gone, net, recorded, emptied, configured, limit, confirmed),
                policy,
                "{case}"
            );
        }
    }
}
