//! The run record: what a run did, one [`ActionReport`] per action, as scheduler_log.json
//! keeps it and `--json` prints it. Written and read back as these same types (see
//! [`super::scheduler_log`]), so a renamed outcome, field or count shows in its golden
//! tests, not as a reader that silently finds nothing. Every field but an action's name
//! and outcome and a run's trigger has a default, so records written by earlier versions
//! (with fewer keys) still read.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::timestamp;
use crate::error::{Error, Exit};
use crate::model::action::Action;
use crate::model::outcome::Outcome;
use crate::model::trigger::Trigger;

/// The keys of [`ActionReport::counts`] that say how many items an action got done or
/// failed on (`log` sums them per cell). The writers use these names, so a rename is one
/// edit both sides see.
pub mod count {
    /// Items an ingest or retry step finished.
    pub const DONE: &str = "done";
    /// Files upload pushed.
    pub const UPLOADED: &str = "uploaded";
    /// Items an ingest or upload step failed on.
    pub const FAILED: &str = "failed";
    /// Tasks retry ran that failed again (they wait for their backoff).
    pub const FAILED_AGAIN: &str = "failed_again";
    /// Tasks retry ran that are now out of attempts.
    pub const DEAD: &str = "dead";
    /// Failed tasks retry found out of attempts before running them: its run marks them
    /// dead (a plan count, so a dry run has it too).
    pub const EXHAUSTED: &str = "exhausted";
    /// Batches ingest sent to its step.
    pub const BATCHES: &str = "batches";
    /// Gone memories ingest's `remove` step confirmed removed from the index.
    pub const REMOVALS_DONE: &str = "removals_done";
    /// Gone memories ingest's `remove` step failed on.
    pub const REMOVALS_FAILED: &str = "removals_failed";
    /// What an action got done.
    pub const OK: [&str; 2] = [DONE, UPLOADED];
    /// What an action failed on.
    pub const BAD: [&str; 3] = [FAILED, FAILED_AGAIN, DEAD];
}

/// The keys of [`ActionReport::details`] that memsched itself reads back.
pub mod detail {
    /// When the action has work again (see [`super::ActionReport::set_next_due`]).
    pub const NEXT_DUE: &str = "next_due";
    /// Retry's open circuit breakers, honoured by later runs.
    pub const BREAKERS: &str = "breakers";
    /// The watchdog's verdict on the pipeline's health ("ok", "degraded", "failing").
    pub const STATUS: &str = "status";
}

/// One action's part of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionReport {
    pub action: Action,
    pub outcome: Outcome,
    /// One line for people.
    #[serde(default)]
    pub summary: String,
    #[serde(default)]
    pub counts: Map<String, Value>,
    /// The plan's decisions, one line each.
    #[serde(default)]
    pub reasons: Vec<String>,
    #[serde(default)]
    pub failed_items: Vec<FailedItem>,
    #[serde(default)]
    pub commands: Vec<CommandReport>,
    #[serde(default)]
    pub error: Option<String>,
    /// The pid holding the action's lock, when that is why it was skipped.
    #[serde(default)]
    pub lock_holder: Option<u32>,
    #[serde(default)]
    pub lock_held: bool,
    /// Action-specific state worth keeping (retry's open circuit breakers, say); the keys
    /// memsched reads back are in [`detail`].
    #[serde(default)]
    pub details: Map<String, Value>,
    #[serde(default)]
    pub duration_ms: u64,
    /// What the watcher needs from this turn, typed (the log keeps its own copy).
    #[serde(skip)]
    pub followup: Followup,
}

/// What an action tells the watcher after its turn: never looked up by key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Followup {
    /// When this action has work again (a backoff ends, a breaker closes, a file settles):
    /// the watcher sets its timer from this.
    pub next_due: Option<SystemTime>,
    /// Items the plan found to act on (files to send or record, tasks or uploads due). On
    /// a tick, these are what no event announced.
    pub found: u64,
    /// (ingest) When the first of the failed tasks it queued falls due: the watcher wakes
    /// retry then.
    pub retry_due: Option<SystemTime>,
}

/// One item an action failed on, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedItem {
    #[serde(default)]
    pub item: String,
    #[serde(default)]
    pub error: String,
}

/// How a command ended, for the run log. What it means (success, the failure's text) is
/// the runner's business: see `run::runner`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CommandReport {
    pub argv: Vec<String>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub timed_out: bool,
    /// Ended by `runner::abort_all` (a second Ctrl-C, say), not by itself or its timeout.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
    pub duration_ms: u64,
    pub stdout_tail: Vec<String>,
    pub stderr_tail: Vec<String>,
}

impl ActionReport {
    #[must_use]
    pub fn new(action: Action, outcome: Outcome, summary: impl Into<String>) -> ActionReport {
        ActionReport {
            action,
            outcome,
            summary: summary.into(),
            counts: Map::new(),
            reasons: Vec::new(),
            failed_items: Vec::new(),
            commands: Vec::new(),
            error: None,
            lock_holder: None,
            lock_held: false,
            details: Map::new(),
            duration_ms: 0,
            followup: Followup::default(),
        }
    }

    /// Records when this action has work again, for the watcher's timer and (as
    /// `details.next_due`) for the log.
    pub fn set_next_due(&mut self, at: SystemTime) {
        self.followup.next_due = Some(at);
        self.details
            .insert(detail::NEXT_DUE.into(), timestamp(at).into());
    }

    /// Records how many items the plan found to act on (see [`Followup::found`]).
    pub fn set_found(&mut self, items: usize) {
        self.followup.found = u64::try_from(items).unwrap_or(u64::MAX);
    }

    /// Marks the report failed with `error` (its whole chain), keeping what was gathered.
    #[must_use]
    pub fn fail(mut self, error: &Error) -> ActionReport {
        self.outcome = Outcome::Failed;
        self.summary = error.chain();
        self.error = Some(error.chain());
        self
    }

    /// The sum of the counts under `keys` (one of [`count::OK`], [`count::BAD`]); a key
    /// missing or not a number counts nothing.
    #[must_use]
    pub fn count_of(&self, keys: &[&str]) -> u64 {
        keys.iter()
            .filter_map(|k| self.counts.get(*k).and_then(Value::as_u64))
            .sum()
    }
}

/// The version of the run record's shape (`--json` and scheduler_log.json): raised when a
/// key changes meaning or goes away; new keys may appear without it.
pub const RECORD_VERSION: u32 = 1;

/// One run, as scheduler_log.json keeps it. Every key is present whatever the outcome (an
/// empty list, `null` or `false` when there is nothing to say), so scripts need no guards;
/// the written form adds `version` ([`RECORD_VERSION`]) and `interrupted`, which reading
/// passes over (the one is this shape, the other follows from `exit_code`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RunRecord {
    /// Its stable number in scheduler_log.json, given when it is appended (see
    /// `scheduler_log::append`); `None` until then, and in records written before it.
    #[serde(default)]
    pub seq: Option<u64>,
    #[serde(default)]
    pub started_at: String,
    #[serde(default)]
    pub finished_at: String,
    #[serde(default)]
    pub duration_ms: u64,
    pub trigger: Trigger,
    #[serde(default)]
    pub modes: Vec<String>,
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default)]
    pub woken_by: Vec<String>,
    #[serde(default)]
    pub pid: u32,
    #[serde(default)]
    pub exit_code: u8,
    #[serde(default)]
    pub actions: Vec<ActionReport>,
}

impl Serialize for RunRecord {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        /// The written form; field order is key order.
        #[derive(Serialize)]
        struct Written<'a> {
            version: u32,
            #[serde(skip_serializing_if = "Option::is_none")]
            seq: Option<u64>,
            started_at: &'a str,
            finished_at: &'a str,
            duration_ms: u64,
            trigger: Trigger,
            modes: &'a [String],
            dry_run: bool,
            woken_by: &'a [String],
            pid: u32,
            exit_code: u8,
            interrupted: bool,
            actions: &'a [ActionReport],
        }
        Written {
            version: RECORD_VERSION,
            seq: self.seq,
            started_at: &self.started_at,
            finished_at: &self.finished_at,
            duration_ms: self.duration_ms,
            trigger: self.trigger,
            modes: &self.modes,
            dry_run: self.dry_run,
            woken_by: &self.woken_by,
            pid: self.pid,
            exit_code: self.exit_code,
            interrupted: self.interrupted(),
            actions: &self.actions,
        }
        .serialize(serializer)
    }
}

/// A run as the list of its action reports (what the breaker and health look through).
impl AsRef<[ActionReport]> for RunRecord {
    fn as_ref(&self) -> &[ActionReport] {
        &self.actions
    }
}

impl RunRecord {
    /// Whether a signal ended the run early (steps not started, or a step ended).
    #[must_use]
    pub fn interrupted(&self) -> bool {
        self.exit_code == Exit::Interrupted.code()
    }

    /// Marks the run as ended early by SIGINT or SIGTERM (exit status 130): actions whose
    /// step `runner::abort_all` ended become [`Outcome::Interrupted`], keeping the counts
    /// they gathered.
    pub fn mark_interrupted(&mut self) {
        for action in &mut self.actions {
            if action.commands.iter().any(|c| c.interrupted) {
                action.outcome = Outcome::Interrupted;
            }
        }
        self.exit_code = Exit::Interrupted.code();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counts_are_summed_by_their_keys_and_odd_values_count_nothing() {
        let mut report = ActionReport::new(Action::Retry, Outcome::Ran, "");
        for (key, n) in [(count::DONE, json!(4)), (count::FAILED_AGAIN, json!(2))] {
            report.counts.insert(key.into(), n);
        }
        report.counts.insert(count::DEAD.into(), json!("1"));
        report.counts.insert("due".into(), json!(9));
        assert_eq!(report.count_of(&count::OK), 4);
        assert_eq!(report.count_of(&count::BAD), 2);
    }

    #[test]
    fn an_action_report_of_the_first_version_reads_with_defaults() {
        // The shape of 645d5b2: no details, the empty lists and the lock left out.
        let first: ActionReport = serde_json::from_value(json!({
            "action": "ingest", "outcome": "nothing-to-do", "summary": "0 files",
            "counts": {"scanned": 0}, "reasons": [], "duration_ms": 3
        }))
        .unwrap();
        let mut expected = ActionReport::new(Action::Ingest, Outcome::NothingToDo, "0 files");
        expected.counts.insert("scanned".into(), json!(0));
        expected.duration_ms = 3;
        assert_eq!(first, expected);
    }

    #[test]
    fn a_command_without_its_interrupted_key_was_not_interrupted() {
        let c: CommandReport = serde_json::from_value(json!({
            "argv": ["true"], "exit_code": 0, "signal": null, "timed_out": false,
            "duration_ms": 1, "stdout_tail": [], "stderr_tail": []
        }))
        .unwrap();
        assert!(!c.interrupted);
        assert_eq!(serde_json::to_value(&c).unwrap().get("interrupted"), None);
    }
}
