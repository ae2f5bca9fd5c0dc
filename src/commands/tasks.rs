//! `memsched tasks`: the operator's lever on task_queue.json (issue 20 item 10). It lists
//! the tasks, revives a dead or failed one, drops one, or clears the done ones. Every
//! change is one locked read-modify-write of the queue (`TaskQueue::update`), so a step
//! or a retry run writing at the same time never loses its change, and only the tasks
//! named are touched.

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use crate::commands::output;
use crate::config::paths::Paths;
use crate::error::{Error, Exit, Result};
use crate::model::task_status::TaskStatus;
use crate::model::words;
use crate::state::json_file::Edit;
use crate::state::task_queue::{TaskQueue, TaskView};
use crate::state::timestamp;

/// The version of `tasks --json`'s shape.
const TASKS_VERSION: u32 = 1;

/// What `memsched tasks` is asked to do.
#[derive(Debug, Clone)]
pub(crate) enum Request {
    /// List the tasks, only those with this status when given.
    List { status: Option<String> },
    /// Make these dead or failed tasks pending again, their attempts reset.
    Revive(Vec<String>),
    /// Remove these tasks.
    Drop(Vec<String>),
    /// Remove every done task.
    ClearDone,
    /// Remove done tasks last updated longer ago than this.
    Prune(Duration),
}

/// Runs `request`; a change prints what it did, one line per task.
pub(crate) fn run(paths: &Paths, request: &Request, json: bool) -> Result<Exit> {
    let lines = match request {
        Request::List { status } => return list(paths, status.as_deref(), json),
        Request::Revive(ids) => TaskQueue::update(paths, |q| revive(q, ids, SystemTime::now()))?,
        Request::Drop(ids) => TaskQueue::update(paths, |q| drop_tasks(q, ids))?,
        Request::Prune(age) => TaskQueue::update(paths, |q| {
            let cutoff = SystemTime::now()
                .checked_sub(*age)
                .unwrap_or(SystemTime::UNIX_EPOCH);
            let n = q.remove_where(|t| t.done_before(cutoff));
            Edit::changed_if(
                n > 0,
                Ok(vec![format!(
                    "pruned {} older than {}",
                    words::count(n, "done task", "done tasks"),
                    humantime::format_duration(*age)
                )]),
            )
        })?,
        Request::ClearDone => TaskQueue::update(paths, |q| {
            let n = q.remove_where(|t| t.status() == Some(TaskStatus::Done));
            Edit::changed_if(
                n > 0,
                Ok(vec![format!(
                    "cleared {}",
                    words::count(n, "done task", "done tasks")
                )]),
            )
        })?,
    }
    .map_err(|why| {
        Error::Usage(format!(
            "{why} in {}; nothing changed",
            paths.task_queue.display()
        ))
    })?;
    let doc = json!({"version": TASKS_VERSION, "done": lines});
    let _ = output::print(json, &doc, |out, _| {
        lines.iter().try_for_each(|l| writeln!(out, "{l}"))
    });
    Ok(Exit::Ok)
}

/// `tasks`: one line per task (id, status, step, attempts, last error), or `--json`.
fn list(paths: &Paths, status: Option<&str>, json: bool) -> Result<Exit> {
    let queue = TaskQueue::load(&paths.task_queue)?;
    let shown: Vec<TaskView<'_>> = queue
        .tasks()
        .filter(|t| status.is_none_or(|s| t.status().is_some_and(|ts| ts.name() == s)))
        .collect();
    let doc = json!({
        "version": TASKS_VERSION,
        "tasks": shown.iter().map(|t| Value::Object(t.0.clone())).collect::<Vec<_>>(),
    });
    let _ = output::print(json, &doc, |out, _| {
        if shown.is_empty() {
            return writeln!(out, "no tasks in {}", paths.task_queue.display());
        }
        for t in &shown {
            let status = t.status();
            let error = t.0.get("last_error").and_then(Value::as_str);
            writeln!(
                out,
                "{:<24} {:<8} {:<12} attempt {}{}{}",
                t.id().unwrap_or("(no id)"),
                status.as_ref().map_or("(none)", TaskStatus::name),
                t.step().unwrap_or("-"),
                t.attempts(),
                t.max_attempts()
                    .map_or(String::new(), |m| format!(" of {m}")),
                error.map_or(String::new(), |e| format!(": {e}")),
            )?;
        }
        Ok(())
    });
    Ok(Exit::Ok)
}

/// The positions of `ids` in the queue, or why one cannot be acted on: unknown, or held
/// by several tasks (a change would land on the wrong one).
fn find(queue: &TaskQueue, ids: &[String]) -> std::result::Result<Vec<usize>, String> {
    let duplicates = queue.duplicate_ids();
    let at = queue.positions();
    ids.iter()
        .map(|id| {
            if duplicates.contains(id.as_str()) {
                return Err(format!("task {id} is held by several tasks"));
            }
            at.get(id).copied().ok_or_else(|| format!("no task {id}"))
        })
        .collect()
}

type Change = Edit<std::result::Result<Vec<String>, String>>;

/// Dead or failed tasks become pending with no attempts and no wait: retry takes them on
/// at its next run. Any other status is refused (a done task is done; a running one runs).
fn revive(queue: &mut TaskQueue, ids: &[String], now: SystemTime) -> Change {
    let positions = match find(queue, ids) {
        Ok(p) => p,
        Err(why) => return Edit::Unchanged(Err(why)),
    };
    for (id, &at) in ids.iter().zip(&positions) {
        let status = queue.at(at).and_then(TaskView::status);
        if !matches!(status, Some(TaskStatus::Dead | TaskStatus::Failed)) {
            let shown = status.as_ref().map_or("without a status", TaskStatus::name);
            return Edit::Unchanged(Err(format!(
                "task {id} is {shown}: only dead or failed tasks are revived"
            )));
        }
    }
    let mut lines = Vec::new();
    for (id, at) in ids.iter().zip(positions) {
        queue.set_at(
            at,
            vec![
                ("status".into(), Some(TaskStatus::Pending.name().into())),
                ("attempts".into(), Some(0.into())),
                ("next_attempt_at".into(), None),
                ("updated_at".into(), Some(timestamp(now).into())),
            ],
        );
        lines.push(format!("revived {id}: pending, attempts reset"));
    }
    Edit::Changed(Ok(lines))
}

/// Removes the named tasks. A failed ingest file's task dropped, ingest sends the file
/// afresh at its next run.
fn drop_tasks(queue: &mut TaskQueue, ids: &[String]) -> Change {
    if let Err(why) = find(queue, ids) {
        return Edit::Unchanged(Err(why));
    }
    queue.remove_where(|t| t.id().is_some_and(|id| ids.iter().any(|i| i == id)));
    Edit::Changed(Ok(ids.iter().map(|id| format!("dropped {id}")).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revive_naming_an_unknown_or_done_task_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("task_queue.json");
        std::fs::write(
            &path,
            r#"{"tasks": [{"id": "a", "status": "dead", "attempts": 5}, {"id": "b", "status": "done"}]}"#,
        )
        .unwrap();
        let mut q = TaskQueue::load(&path).unwrap();
        let ids = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            revive(&mut q, &ids(&["a", "x"]), SystemTime::now()),
            Edit::Unchanged(Err("no task x".into()))
        );
        assert!(
            revive(&mut q, &ids(&["a", "b"]), SystemTime::now())
                .split()
                .1
                .unwrap_err()
                .contains("b is done")
        );
        assert_eq!(q.get("a").unwrap().status(), Some(TaskStatus::Dead));
        assert!(matches!(
            revive(&mut q, &ids(&["a"]), SystemTime::now()),
            Edit::Changed(Ok(_))
        ));
        assert_eq!(q.get("a").unwrap().status(), Some(TaskStatus::Pending));
        assert_eq!(q.get("a").unwrap().attempts(), 0);
    }
}
