//! What a run did: one [`ActionReport`] per action and the [`RunRecord`] that goes to
//! scheduler_log.json and, with `--json`, to stdout.

use std::time::SystemTime;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{Error, Exit};
use crate::model::action::Action;
use crate::model::trigger::Trigger;
use crate::run::runner::CommandReport;
use crate::state::timestamp;

/// How an action's turn in a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The plan found work and the step ran.
    Ran,
    /// The plan found nothing to do.
    NothingToDo,
    /// `--dry-run`: the plan found work that a real run would do.
    WouldRun,
    /// Not run: not configured, or another process holds its lock.
    Skipped,
    /// It could not do its work; `error` says why.
    Failed,
    /// A second Ctrl-C (or SIGTERM) ended its step's process group.
    Interrupted,
}

impl Outcome {
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Ran => "ran",
            Outcome::NothingToDo => "nothing to do",
            Outcome::WouldRun => "would run",
            Outcome::Skipped => "skipped",
            Outcome::Failed => "failed",
            Outcome::Interrupted => "interrupted",
        }
    }
}

/// One action's part of a run.
#[derive(Debug, Clone, Serialize)]
pub struct ActionReport {
    pub action: Action,
    pub outcome: Outcome,
    /// One line for people.
    pub summary: String,
    pub counts: Map<String, Value>,
    /// The plan's decisions, one line each.
    pub reasons: Vec<String>,
    pub failed_items: Vec<FailedItem>,
    pub commands: Vec<CommandReport>,
    pub error: Option<String>,
    /// The pid holding the action's lock, when that is why it was skipped.
    pub lock_holder: Option<u32>,
    pub lock_held: bool,
    /// Action-specific state worth keeping (retry's open circuit breakers, say).
    pub details: Map<String, Value>,
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
}

/// One item an action failed on, and why.
#[derive(Debug, Clone, Serialize)]
pub struct FailedItem {
    pub item: String,
    pub error: String,
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
        self.details.insert("next_due".into(), timestamp(at).into());
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
}

/// The version of the run record's shape (`--json` and scheduler_log.json): raised when a
/// key changes meaning or goes away; new keys may appear without it.
pub const RECORD_VERSION: u32 = 1;

/// One run, as scheduler_log.json keeps it. Every key is present whatever the outcome (an
/// empty list, `null` or `false` when there is nothing to say), so scripts need no guards;
/// the written form adds `version` ([`RECORD_VERSION`]) and `interrupted`.
#[derive(Debug, Clone)]
pub struct RunRecord {
    pub started_at: String,
    pub finished_at: String,
    pub duration_ms: u64,
    pub trigger: Trigger,
    pub modes: Vec<String>,
    pub dry_run: bool,
    pub woken_by: Vec<String>,
    pub pid: u32,
    pub exit_code: u8,
    pub actions: Vec<ActionReport>,
}

impl Serialize for RunRecord {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        /// The written form; field order is key order.
        #[derive(Serialize)]
        struct Written<'a> {
            version: u32,
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

impl RunRecord {
    /// Whether a signal ended the run early (steps not started, or a step ended).
    #[must_use]
    pub fn interrupted(&self) -> bool {
        self.exit_code == Exit::Interrupted.code()
    }

    /// Marks the run as ended early by SIGINT or SIGTERM (exit status 130): actions whose
    /// step [`crate::run::runner::abort_all`] ended become [`Outcome::Interrupted`], keeping the
    /// counts they gathered.
    pub fn mark_interrupted(&mut self) {
        for action in &mut self.actions {
            if action.commands.iter().any(|c| c.interrupted) {
                action.outcome = Outcome::Interrupted;
            }
        }
        self.exit_code = Exit::Interrupted.code();
    }
}

/// The exit status of a run: an interruption beats any failure, which beats a held lock,
/// which beats success.
#[must_use]
pub fn exit_of(actions: &[ActionReport]) -> Exit {
    if actions.iter().any(|a| a.outcome == Outcome::Interrupted) {
        Exit::Interrupted
    } else if actions.iter().any(|a| a.outcome == Outcome::Failed) {
        Exit::ActionFailed
    } else if actions.iter().any(|a| a.lock_held) {
        Exit::LockHeld
    } else {
        Exit::Ok
    }
}
