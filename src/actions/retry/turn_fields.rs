//! How a retried task's turn ended, and the fields it writes into the queue: done,
//! failed with backoff or dead after its step ran; dead when its file was refused; done
//! when its file is gone.

use std::time::SystemTime;

use serde_json::Value;

use crate::actions::retry_policy::{self, AfterFailure};
use crate::config::rules::RetryConfig;
use crate::model::task_status::TaskStatus;
use crate::state::task_queue::{RUNNING_BY, TaskView};
use crate::state::timestamp;

/// How one due task's turn ended.
#[derive(Debug)]
pub(super) enum Turn {
    Done,
    Failed {
        error: String,
        dead: bool,
        /// When it falls due again (none once dead).
        next: Option<SystemTime>,
    },
    /// Its step's breaker opened earlier in this run.
    Paused,
    /// Someone else changed it since the plan (no longer failed): left alone.
    Gone,
    /// Its file is gone from data_dir: closed as done without running (why).
    Closed {
        why: String,
    },
    /// Another process holds its step's lock (why): left due for a later run.
    Busy {
        why: String,
    },
}

/// One field set to `value`.
pub(super) fn field(key: &str, value: Value) -> (String, Option<Value>) {
    (key.to_owned(), Some(value))
}

/// The fields and turn of a task whose step ran: done, or failed with backoff, or dead.
pub(super) fn result_fields(
    config: &RetryConfig,
    task: TaskView<'_>,
    id: &str,
    started: SystemTime,
    error: Option<String>,
    finished: SystemTime,
) -> (Vec<(String, Option<Value>)>, Option<Turn>) {
    let mut fields = vec![
        field("updated_at", timestamp(finished).into()),
        field("started_at", timestamp(started).into()),
        (RUNNING_BY.to_owned(), None),
    ];
    let turn = match error {
        None => {
            fields.push(field("status", TaskStatus::Done.into()));
            fields.push(field("completed_at", timestamp(finished).into()));
            Turn::Done
        }
        Some(error) => {
            let attempts = task.attempts() + 1;
            let max = task
                .max_attempts()
                .unwrap_or(u64::from(config.max_attempts));
            fields.push(field("attempts", attempts.into()));
            fields.push(field("last_error", error.as_str().into()));
            let after = retry_policy::after_failure(&config.backoff, attempts, max, id, finished);
            fields.extend(after_failure_fields(after));
            Turn::Failed {
                error,
                dead: after == AfterFailure::OutOfAttempts,
                next: match after {
                    AfterFailure::RetryAt(at) => Some(at),
                    AfterFailure::OutOfAttempts => None,
                },
            }
        }
    };
    (fields, Some(turn))
}

/// The fields and turn of a task whose file leads outside data_dir, or whose id reads as
/// an option: dead, never run.
pub(super) fn refused_fields(
    why: String,
    started: SystemTime,
    now: SystemTime,
) -> (Vec<(String, Option<Value>)>, Option<Turn>) {
    let fields = vec![
        field("updated_at", timestamp(now).into()),
        field("started_at", timestamp(started).into()),
        (RUNNING_BY.to_owned(), None),
        field("status", TaskStatus::Dead.into()),
        field("last_error", why.as_str().into()),
    ];
    let turn = Turn::Failed {
        error: why,
        dead: true,
        next: None,
    };
    (fields, Some(turn))
}

/// The fields and turn of a task whose file is gone: done, saying why in `closed`.
pub(super) fn closed_fields(
    why: String,
    started: SystemTime,
    now: SystemTime,
) -> (Vec<(String, Option<Value>)>, Option<Turn>) {
    let fields = vec![
        field("updated_at", timestamp(now).into()),
        field("started_at", timestamp(started).into()),
        (RUNNING_BY.to_owned(), None),
        field("status", TaskStatus::Done.into()),
        field("completed_at", timestamp(now).into()),
        field("closed", why.as_str().into()),
    ];
    (fields, Some(Turn::Closed { why }))
}

/// A failed task's new status: dead, or failed and due again later.
#[must_use]
pub(super) fn after_failure_fields(after: AfterFailure) -> Vec<(String, Option<Value>)> {
    match after {
        AfterFailure::OutOfAttempts => vec![field("status", TaskStatus::Dead.into())],
        AfterFailure::RetryAt(at) => vec![
            field("status", TaskStatus::Failed.into()),
            field("next_attempt_at", timestamp(at).into()),
        ],
    }
}
