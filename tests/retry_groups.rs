//! The retry action's groups (issue 8): tasks that share their writes of the queue, a
//! kill in the middle of a group, tasks handed back to the next run, and the counts a
//! retry run reports.

use std::time::{Duration, SystemTime};

use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use crate::retry::{retried, task, time};
use crate::util::*;

// ---- issue 8: the queue is written once per group, and a kill loses no task ----

/// `n` failed tasks `t00`, `t01`, …, all due.
fn many(n: usize) -> Value {
    let tasks: Vec<Value> = (0..n)
        .map(|i| task(&format!("t{i:02}"), "ingest", json!({})))
        .collect();
    json!({ "tasks": tasks })
}

#[test]
fn issue_8_quick_tasks_share_their_writes_of_the_queue() {
    let env = TestEnv::new();
    // A step that costs next to nothing, however loaded the machine.
    env.raw_rules("[actions.retry]\ncommand = [\"true\", \"{task_id}\"]\n");
    env.state_file("task_queue.json", &many(40));
    let run = env
        .test()
        .args(&["--once", "--mode", "retry", "--json"])
        .run();
    let retry = run.action("retry");
    assert_eq!(retry["counts"]["done"], 40);
    // One task, then four, then sixteen…: a handful of groups, two writes each, where
    // every task used to cost two writes of its own.
    let groups = retry["counts"]["groups"].as_u64().unwrap();
    assert!(groups <= 10, "{groups} groups for 40 quick tasks");
    assert_eq!(
        retry["commands"].as_array().unwrap().len(),
        40,
        "each ran once"
    );
    let queue = env.state_json("task_queue.json");
    for t in queue["tasks"].as_array().unwrap() {
        assert_eq!(t["status"], "done", "{t}");
        assert!(t["started_at"].is_string() && t["completed_at"].is_string());
    }
}

#[test]
fn issue_8_a_kill_in_the_middle_of_a_group_loses_no_task() {
    let env = TestEnv::new();
    env.retry_rules(&["--sleep", "0.05"], "stuck_after = \"1s\"\n");
    env.state_file("task_queue.json", &many(30));
    let mut child = env
        .command(&["--once", "--mode", "retry"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // In the third group (one task, then four, then more), some tasks of the group have
    // run and others wait, all marked running.
    wait_until(
        "six tasks have started",
        Duration::from_secs(30),
        &String::new,
        || env.calls().len() >= 6,
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let started: Vec<String> = retried(&env);
    let queue = env.state_json("task_queue.json");
    for t in queue["tasks"].as_array().unwrap() {
        let id = t["id"].as_str().unwrap();
        if started.iter().any(|s| s == id) {
            assert!(
                t["status"] == "running" || t["status"] == "done",
                "a task whose step started is marked running or recorded: {t}"
            );
        }
        if t["status"] == "running" {
            assert!(t["started_at"].is_string(), "{t}");
        }
    }
    // Later runs take the tasks left running as crashed (stuck_after 1s) and finish all.
    let backoff_free = |env: &TestEnv| {
        let mut q = env.state_json("task_queue.json");
        for t in q["tasks"].as_array_mut().unwrap() {
            t.as_object_mut().unwrap().remove("next_attempt_at");
        }
        env.state_file("task_queue.json", &q);
    };
    wait_until(
        "every task is done",
        Duration::from_secs(60),
        &String::new,
        || {
            let out = env.run(&["--once", "--mode", "retry"]);
            // 3: the killed run's step still holds the lock for a moment.
            assert!(matches!(out.status.code(), Some(0 | 3)), "{}", stderr(&out));
            backoff_free(&env);
            let q = env.state_json("task_queue.json");
            q["tasks"]
                .as_array()
                .unwrap()
                .iter()
                .all(|t| t["status"] == "done")
        },
    );
}

// ---- issue 9 item 9: a running task whose time tells nothing ----

#[test]
fn issue_9_a_running_task_whose_time_tells_nothing_is_restamped_then_taken_as_stuck() {
    let env = TestEnv::new();
    env.retry_rules(
        &[],
        "stuck_after = \"1s\"\nbackoff = { initial = \"0s\" }\n",
    );
    let running = |id: &str, extra: Value| {
        let mut t = task(id, "ingest", json!({"status": "running"}));
        t.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        t
    };
    env.state_file(
        "task_queue.json",
        &json!({"tasks": [
            running("garbled", json!({"updated_at": "not a date"})),
            running("ahead", json!({"updated_at": "2999-01-01T00:00:00Z"})),
            running("timeless", json!({})),
        ]}),
    );
    let run = env
        .test()
        .args(&["--once", "--mode", "retry", "--json"])
        .run();
    let retry = run.action("retry");
    assert_eq!(retry["counts"]["restamped"], 3, "{retry:#}");
    assert!(
        retry["summary"]
            .as_str()
            .unwrap()
            .contains("restamped 3 running tasks whose time told nothing"),
        "{}",
        retry["summary"]
    );
    let queue = env.state_json("task_queue.json");
    let tasks = queue["tasks"].as_array().unwrap();
    for t in tasks {
        assert_eq!(
            t["status"], "running",
            "left to its runner for stuck_after: {t}"
        );
        assert!(time(&t["updated_at"]) <= SystemTime::now(), "{t}");
    }
    assert_eq!(tasks[0]["updated_at_was"], "not a date");
    assert_eq!(tasks[1]["updated_at_was"], "2999-01-01T00:00:00Z");
    assert!(tasks[2].get("updated_at_was").is_none());
    // stuck_after later they are taken as crashed, and then run like any failed task.
    wait_until(
        "every task is done",
        Duration::from_secs(30),
        &String::new,
        || {
            assert_exit(&env.run(&["--once", "--mode", "retry"]), 0);
            let q = env.state_json("task_queue.json");
            q["tasks"]
                .as_array()
                .unwrap()
                .iter()
                .all(|t| t["status"] == "done")
        },
    );
}

#[test]
fn issue_11_retry_counts_agree_with_their_nouns() {
    let env = TestEnv::new();
    env.retry_rules(&[], "");
    env.state_file(
        "task_queue.json",
        &json!([
            task("one", "ingest", json!({})),
            task(
                "later",
                "ingest",
                json!({"next_attempt_at": "2999-01-01T00:00:00Z"})
            )
        ]),
    );
    env.test()
        .args(&["--once", "--mode", "retry", "--dry-run"])
        .stdout_has("would run 1 due task in ranked order\n")
        .stdout_has("1 task waits for its backoff")
        .run();
    env.test()
        .args(&["--once", "--mode", "retry"])
        .stdout_has("ran 1 due task: 1 done, 0 failed again, 0 dead\n")
        .run();
    env.test()
        .args(&["--once", "--mode", "retry"])
        .stdout_has("1 failed task, none due")
        .run();
}

#[test]
fn issue_8_tasks_a_group_had_no_time_for_are_handed_back_and_run_in_the_next() {
    let env = TestEnv::new();
    env.retry_rules(&[], "");
    // The first task is quick, so the next group holds four; each of those takes 0.6 s,
    // so that group spends its one-second budget after two of them: the other two go
    // back as they were and run in a third group.
    let log = env.home().join("ran.log");
    let script = format!("sleep $0 && echo $MEMSCHED_TASK_ID >> '{}'", log.display());
    let tasks: Vec<Value> = (0..5)
        .map(|i| {
            let pause = if i == 0 { "0" } else { "0.6" };
            task(
                &format!("t{i:02}"),
                "ingest",
                json!({"command": ["sh", "-c", script, pause]}),
            )
        })
        .collect();
    env.state_file("task_queue.json", &json!({ "tasks": tasks }));
    let run = env
        .test()
        .args(&["--once", "--mode", "retry", "--json"])
        .run();
    let retry = run.action("retry");
    assert_eq!(retry["counts"]["done"], 5, "{retry:#}");
    assert_eq!(retry["counts"]["groups"], 3, "{retry:#}");
    assert_eq!(retry["counts"]["handed_back"], 2, "{retry:#}");
    let text = std::fs::read_to_string(&log).unwrap();
    let mut ran: Vec<&str> = text.lines().collect();
    ran.sort_unstable();
    assert_eq!(
        ran,
        ["t00", "t01", "t02", "t03", "t04"],
        "each exactly once"
    );
    for t in env.state_json("task_queue.json")["tasks"]
        .as_array()
        .unwrap()
    {
        assert_eq!(t["status"], "done", "{t}");
    }
}
