//! [`TaskStatus`]: the status of a task in task_queue.json. A shared noun of retry, ingest,
//! the watcher's baselines and health. Statuses memsched does not know (a step may write
//! its own) are kept as written.

use std::fmt;

/// A task's `status`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TaskStatus {
    Pending,
    Running,
    Done,
    Failed,
    Dead,
    /// A status some step wrote that memsched does not know; kept, never acted on.
    Other(String),
}

impl TaskStatus {
    #[must_use]
    pub fn parse(text: &str) -> TaskStatus {
        match text {
            "pending" => TaskStatus::Pending,
            "running" => TaskStatus::Running,
            "done" => TaskStatus::Done,
            "failed" => TaskStatus::Failed,
            "dead" => TaskStatus::Dead,
            other => TaskStatus::Other(other.to_owned()),
        }
    }

    #[must_use]
    pub fn name(&self) -> &str {
        match self {
            TaskStatus::Pending => "pending",
            TaskStatus::Running => "running",
            TaskStatus::Done => "done",
            TaskStatus::Failed => "failed",
            TaskStatus::Dead => "dead",
            TaskStatus::Other(text) => text,
        }
    }
}

impl From<TaskStatus> for serde_json::Value {
    fn from(status: TaskStatus) -> serde_json::Value {
        serde_json::Value::from(status.name())
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_statuses_round_trip_and_unknown_ones_are_kept() {
        for name in [
            "pending",
            "running",
            "done",
            "failed",
            "dead",
            "queued-by-me",
        ] {
            assert_eq!(TaskStatus::parse(name).name(), name);
        }
        assert_eq!(TaskStatus::parse("failed"), TaskStatus::Failed);
    }
}
