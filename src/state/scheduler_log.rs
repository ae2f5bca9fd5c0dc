//! scheduler_log.json: one [`RunRecord`] per run, newest last, bounded by `log_keep`.
//! Written and read back as the same type, so every reader (the breaker, health, `log`,
//! `status`) sees the fields the writer wrote, by name the compiler checks.

use serde::Deserialize;
use serde_json::Value;

use super::json_file::{Edit, ListDoc};
use super::run_record::RunRecord;
use crate::config::paths::Paths;
use crate::error::Result;

/// The key of the list in the log's document.
const RUNS: &str = "runs";

/// The key of a record's stable number (issue 20 item 8: numbers by position shifted
/// once `log_keep` dropped the oldest, so `log 187` named another run a minute later).
const SEQ: &str = "seq";

/// The number of the record in slot `index` (from the oldest): its `seq`, or for a
/// record written before `seq` existed, its place counted from 1, as `log` numbered it.
fn number(written: &Value, index: usize) -> u64 {
    written
        .get(SEQ)
        .and_then(Value::as_u64)
        .unwrap_or(index as u64 + 1)
}

/// Appends `record` under the log's lock with the next number as its `seq`, dropping the
/// oldest records beyond `keep`. Records without a `seq` are given the number they have
/// now first, so dropping older ones never renumbers them. A log that does not parse is
/// left untouched and the error returned.
/// `record.seq` is set to the number it was given.
pub(crate) fn append(paths: &Paths, record: &mut RunRecord, keep: usize) -> Result<()> {
    ListDoc::update(&paths.scheduler_log, RUNS, |doc: &mut ListDoc| {
        let runs = doc.items_mut();
        let mut last = 0;
        for (i, run) in runs.iter_mut().enumerate() {
            let n = number(run, i);
            if let Some(map) = run.as_object_mut() {
                map.entry(SEQ).or_insert(n.into());
            }
            last = last.max(n);
        }
        record.seq = Some(last + 1);
        runs.push(serde_json::to_value(&*record).expect("a run record always serialises"));
        let excess = runs.len().saturating_sub(keep);
        runs.drain(..excess);
        Edit::Changed(())
    })
}

/// One slot of the log, as `log` numbers them: the record as written (what `log --json`
/// prints, keys this version does not know included) and typed, or why it does not read
/// as a [`RunRecord`] (a hand edit, an outcome a newer memsched wrote).
#[derive(Debug, Clone)]
pub(crate) struct Logged {
    /// Its stable number, as `log` shows it (see [`append`]).
    pub seq: u64,
    pub written: Value,
    pub record: std::result::Result<RunRecord, String>,
}

/// Every slot of the log, oldest first.
pub(crate) fn read_logged(paths: &Paths) -> Result<Vec<Logged>> {
    let mut doc = ListDoc::load(&paths.scheduler_log, RUNS)?;
    let runs = std::mem::take(doc.items_mut());
    Ok(runs
        .into_iter()
        .enumerate()
        .map(|(i, written)| Logged {
            seq: number(&written, i),
            record: RunRecord::deserialize(&written).map_err(|e| e.to_string()),
            written,
        })
        .collect())
}

/// Every run record that reads, oldest first; a slot that does not is passed over, as it
/// tells nothing about breakers or the last runs.
pub(crate) fn read(paths: &Paths) -> Result<Vec<RunRecord>> {
    Ok(read_logged(paths)?
        .into_iter()
        .filter_map(|slot| slot.record.ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::action::Action;
    use crate::model::outcome::Outcome;
    use crate::model::trigger::Trigger;
    use crate::state::run_record::{ActionReport, CommandReport, FailedItem, count};
    use serde_json::json;

    fn paths(dir: &std::path::Path) -> Paths {
        std::fs::write(dir.join("paths.json"), "{}").unwrap();
        Paths::load(&dir.join("paths.json")).unwrap()
    }

    /// A run with something in every field, as today's writer fills them.
    fn full_run() -> RunRecord {
        let mut retry =
            ActionReport::new(Action::Retry, Outcome::Skipped, "pid 42 holds retry.lock");
        retry.lock_held = true;
        retry.lock_holder = Some(42);
        let mut ingest = ActionReport::new(Action::Ingest, Outcome::Interrupted, "sent 1 file");
        ingest.counts.insert(count::DONE.into(), json!(0));
        ingest.counts.insert(count::FAILED.into(), json!(1));
        ingest
            .reasons
            .push("send a.txt: content not yet ingested".into());
        ingest.failed_items.push(FailedItem {
            item: "a.txt".into(),
            error: "exit 3: oops".into(),
        });
        ingest.commands.push(CommandReport {
            argv: vec!["sh".into(), "-c".into()],
            exit_code: None,
            signal: Some(15),
            timed_out: false,
            interrupted: true,
            duration_ms: 5,
            stdout_tail: vec!["hi".into()],
            stderr_tail: vec!["oops".into()],
        });
        ingest.error = Some("the ingest step failed on 1 file".into());
        ingest
            .details
            .insert("next_due".into(), json!("2026-12-05T12:30:00.000Z"));
        ingest.duration_ms = 9;
        RunRecord {
            seq: None,
            started_at: "2026-12-05T12:23:39.389Z".into(),
            finished_at: "2026-12-05T12:23:39.399Z".into(),
            duration_ms: 10,
            trigger: Trigger::Event,
            modes: vec!["ingest".into()],
            dry_run: false,
            woken_by: vec!["Data/a.txt".into()],
            pid: 26340,
            exit_code: 130,
            actions: vec![retry, ingest],
        }
    }

    /// The golden round trip: what the writer appends, the reader gives back, field for
    /// field, and the written form stays the same when written again.
    #[test]
    fn a_record_reads_back_as_it_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let p = paths(dir.path());
        let mut run = full_run();
        append(&p, &mut run, 10).unwrap();
        let slots = read_logged(&p).unwrap();
        assert_eq!(slots.len(), 1);
        assert_eq!(slots[0].record.as_ref().unwrap(), &run);
        assert_eq!(slots[0].written, serde_json::to_value(&run).unwrap());
        assert_eq!((slots[0].seq, run.seq), (1, Some(1)));
        assert_eq!(read(&p).unwrap(), [run]);
    }

    /// A record in today's on-disk shape (copied from a real `--once` run's log) reads
    /// into the types and writes back to the very same JSON: the file format does not
    /// change under the readers.
    #[test]
    fn todays_on_disk_record_reads_and_writes_the_same() {
        let on_disk = json!({
            "version": 1,
            "started_at": "2026-12-05T12:23:39.389Z",
            "finished_at": "2026-12-05T12:23:39.399Z",
            "duration_ms": 10,
            "trigger": "manual",
            "modes": ["retry", "ingest", "upload", "watchdog"],
            "dry_run": false,
            "woken_by": [],
            "pid": 26340,
            "exit_code": 1,
            "interrupted": false,
            "actions": [
                {
                    "action": "retry",
                    "outcome": "nothing-to-do",
                    "summary": "no failed tasks",
                    "counts": {"due": 0, "waiting": 0, "paused": 0, "stuck": 0,
                               "exhausted": 0, "restamped": 0, "plan_ms": 0},
                    "reasons": [],
                    "failed_items": [],
                    "commands": [],
                    "error": null,
                    "lock_holder": null,
                    "lock_held": false,
                    "details": {"breakers": [
                        {"step": "upload", "class": "exit 1: quota", "until": "2026-12-05T13:00:00.000Z"}
                    ]},
                    "duration_ms": 0
                },
                {
                    "action": "ingest",
                    "outcome": "failed",
                    "summary": "sent 1 file in 1 batch: 0 done, 1 failed (queued in task_queue.json for retry)",
                    "counts": {"scanned": 1, "unchanged": 0, "hashed": 1, "read_by_watcher": 0,
                               "to_send": 1, "modified": 0, "known_content": 0, "deferred": 0,
                               "awaiting_retry": 0, "given_up": 0, "removed": 0, "unreadable": 0,
                               "done": 0, "failed": 1, "recorded_only": 0, "batches": 1},
                    "reasons": ["send a.txt: content not yet ingested"],
                    "failed_items": [{"item": "a.txt", "error": "exit 3: oops"}],
                    "commands": [{
                        "argv": ["sh", "-c", "echo hi; echo oops >&2; exit 3", "x", "/tmp/rbhome/Data/a.txt"],
                        "exit_code": 3,
                        "signal": null,
                        "timed_out": false,
                        "duration_ms": 5,
                        "stdout_tail": ["hi"],
                        "stderr_tail": ["oops"]
                    }],
                    "error": "the ingest step failed on 1 file",
                    "lock_holder": null,
                    "lock_held": false,
                    "details": {},
                    "duration_ms": 9
                },
                {
                    "action": "upload",
                    "outcome": "skipped",
                    "summary": "not configured: no [actions.upload] table in /tmp/rbhome/watch-rules.toml",
                    "counts": {},
                    "reasons": [],
                    "failed_items": [],
                    "commands": [],
                    "error": null,
                    "lock_holder": null,
                    "lock_held": false,
                    "details": {},
                    "duration_ms": 0
                }
            ]
        });
        let dir = tempfile::tempdir().unwrap();
        let p = paths(dir.path());
        let text = serde_json::to_string_pretty(&json!({"runs": [on_disk]})).unwrap();
        std::fs::write(&p.scheduler_log, text).unwrap();
        let runs = read(&p).unwrap();
        let [run] = runs.as_slice() else {
            panic!("one record: {runs:?}")
        };
        assert_eq!(run.trigger, Trigger::Manual);
        assert_eq!(run.exit_code, 1);
        let outcomes: Vec<(Action, Outcome)> =
            run.actions.iter().map(|a| (a.action, a.outcome)).collect();
        assert_eq!(
            outcomes,
            [
                (Action::Retry, Outcome::NothingToDo),
                (Action::Ingest, Outcome::Failed),
                (Action::Upload, Outcome::Skipped),
            ]
        );
        let ingest = &run.actions[1];
        assert_eq!(ingest.commands[0].exit_code, Some(3));
        assert_eq!(ingest.failed_items[0].item, "a.txt");
        assert_eq!(serde_json::to_value(run).unwrap(), on_disk);
    }

    /// Records of the first version had fewer keys (no `version`, `woken_by`, `details`,
    /// `interrupted`; empty lists and a free lock left out): they read with defaults. One
    /// that does not read keeps its slot for `log`, and the others are still read.
    #[test]
    fn older_records_read_with_defaults_and_an_unreadable_one_is_passed_over() {
        let dir = tempfile::tempdir().unwrap();
        let p = paths(dir.path());
        let doc = json!({"runs": [
            {"started_at": "2026-11-26T03:00:00.000Z", "finished_at": "2026-11-26T03:00:01.000Z",
             "duration_ms": 1000, "trigger": "cron", "modes": ["ingest"], "dry_run": false,
             "pid": 7, "exit_code": 0,
             "actions": [{"action": "ingest", "outcome": "ran", "summary": "sent 2 files",
                          "counts": {"done": 2}, "reasons": [], "duration_ms": 900}]},
            {"trigger": "manual", "actions": [{"action": "ingest", "outcome": "exploded"}]},
            42
        ]});
        std::fs::write(&p.scheduler_log, doc.to_string()).unwrap();
        let slots = read_logged(&p).unwrap();
        assert_eq!(slots.len(), 3);
        assert!(slots[1].record.as_ref().unwrap_err().contains("exploded"));
        assert!(slots[2].record.is_err());
        assert_eq!(slots[2].written, json!(42));
        let runs = read(&p).unwrap();
        assert_eq!(runs.len(), 1);
        let first = &runs[0];
        assert_eq!(first.trigger, Trigger::Cron);
        assert!(first.woken_by.is_empty());
        let ingest = &first.actions[0];
        assert_eq!((ingest.outcome, ingest.lock_holder), (Outcome::Ran, None));
        assert!(!ingest.lock_held && ingest.commands.is_empty() && ingest.details.is_empty());
    }

    #[test]
    fn the_log_keeps_the_newest_records_and_a_missing_log_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let p = paths(dir.path());
        assert!(read(&p).unwrap().is_empty());
        for pid in 1..=4 {
            append(&p, &mut RunRecord { pid, ..full_run() }, 2).unwrap();
        }
        let pids: Vec<u32> = read(&p).unwrap().iter().map(|r| r.pid).collect();
        assert_eq!(pids, [3, 4]);
    }
}
