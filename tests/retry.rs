//! The retry action end to end: ranking, backoff, dead tasks, stuck tasks, concurrent
//! writers, circuit breaker.

use std::time::{Duration, SystemTime};

use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use crate::harness::Test;
use crate::util::*;

/// A failed task; `extra` fields override the defaults.
pub(crate) fn task(id: &str, step: &str, extra: Value) -> Value {
    let mut t = json!({"id": id, "step": step, "status": "failed", "attempts": 1, "created_at": "2026-11-01T00:00:00Z"});
    if let Value::Object(fields) = extra {
        t.as_object_mut().unwrap().extend(fields);
    }
    t
}

pub(crate) fn time(v: &Value) -> SystemTime {
    memsched::state::parse_time(v.as_str().unwrap()).unwrap()
}

/// The task ids the recording step was run for, in order (from the JSON on its stdin).
pub(crate) fn retried(env: &TestEnv) -> Vec<String> {
    env.calls()
        .iter()
        .map(|c| {
            let task: Value = serde_json::from_slice(&c.stdin).unwrap();
            assert_eq!(
                c.args,
                [task["id"].as_str().unwrap().as_bytes().to_vec()],
                "{{task_id}} must match stdin"
            );
            task["id"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[test]
fn due_tasks_run_by_priority_then_step_weight_then_age_and_become_done() {
    let env = TestEnv::new();
    env.retry_rules(&[], "weights = { ingest = 10, upload = 5 }\n");
    env.state_file(
        "task_queue.json",
        &json!({"tasks": [
            task("low", "ingest", json!({"priority": "low"})),
            task("upload-normal", "upload", json!({})),
            task("ingest-normal-new", "ingest", json!({"created_at": "2026-11-20T00:00:00Z"})),
            task("ingest-normal-old", "ingest", json!({"created_at": "2026-11-10T00:00:00Z"})),
            task("critical", "misc", json!({"priority": "critical"})),
            task("not-yet", "ingest", json!({"next_attempt_at": "2999-01-01T00:00:00Z"})),
            {"id": "finished", "step": "ingest", "status": "done"},
        ]}),
    );
    env.test().args(&["--once", "--mode", "retry"]).run();
    assert_eq!(
        retried(&env),
        [
            "critical",
            "ingest-normal-old",
            "ingest-normal-new",
            "upload-normal",
            "low"
        ]
    );
    let queue = env.state_json("task_queue.json");
    let statuses: Vec<&str> = queue["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["done", "done", "done", "done", "done", "failed", "done"]
    );
    assert!(queue["tasks"][0]["completed_at"].is_string());
    assert_eq!(retried(&env).len(), 5);
}

#[test]
fn dry_run_prints_the_ranked_plan_with_a_reason_per_place() {
    let run = Test::new()
        .retry_rules(&[], "")
        .state_file(
            "task_queue.json",
            &json!([
                task("b", "ingest", json!({"priority": "high"})),
                task("a", "ingest", json!({}))
            ]),
        )
        .args(&["--once", "--mode", "retry", "--dry-run"])
        .stdout_has("would run 2 due tasks")
        .run();
    let text = run.stdout();
    let first = text.find("1. b: priority high").expect(&text);
    let second = text.find("2. a: priority normal").expect(&text);
    assert!(first < second);
    assert!(run.env().calls().is_empty());
}

#[test]
fn a_failure_backs_off_exponentially_and_the_last_attempt_makes_the_task_dead() {
    let env = TestEnv::new();
    env.retry_rules(
        &["--exit", "7"],
        "max_attempts = 3\nbackoff = { initial = \"10s\", factor = 2.0, jitter = 0.2 }\n",
    );
    env.state_file(
        "task_queue.json",
        &json!({"tasks": [
            task("second-try", "ingest", json!({"attempts": 1})),
            task("last-try", "ingest", json!({"attempts": 2})),
            task("spent", "ingest", json!({"attempts": 3})),
            task("own-limit", "ingest", json!({"attempts": 3, "max_attempts": 10})),
        ]}),
    );
    // The step failed on tasks of this run: the run exits 1 (issue 9, case 10).
    let retry = env
        .test()
        .args(&["--once", "--mode", "retry", "--json"])
        .status(1)
        .run()
        .action("retry");
    assert_eq!(retry["counts"]["failed_again"], 2, "{retry:#}");
    assert_eq!(retry["counts"]["dead"], 1, "{retry:#}");
    assert_eq!(retry["counts"]["exhausted"], 1, "{retry:#}");
    let mut ran = retried(&env);
    ran.sort();
    assert_eq!(
        ran,
        ["last-try", "own-limit", "second-try"],
        "the spent task must not run"
    );

    let tasks = env.state_json("task_queue.json")["tasks"].clone();
    let second = &tasks[0];
    assert_eq!(second["status"], "failed");
    assert_eq!(second["attempts"], 2);
    assert_eq!(second["last_error"], "exit 7: record.py: exiting 7");
    // Attempt 2 failed: 10 s * 2^(2-1) = 20 s, give or take 20 %.
    let wait = time(&second["next_attempt_at"])
        .duration_since(time(&second["updated_at"]))
        .unwrap();
    assert!(
        (Duration::from_secs(16)..=Duration::from_secs(24)).contains(&wait),
        "{wait:?}"
    );
    let own = &tasks[3];
    assert_eq!(own["attempts"], 4);
    let wait = time(&own["next_attempt_at"])
        .duration_since(time(&own["updated_at"]))
        .unwrap();
    assert!(
        (Duration::from_secs(64)..=Duration::from_secs(96)).contains(&wait),
        "{wait:?}"
    );
    assert_eq!(tasks[1]["status"], "dead");
    assert_eq!(tasks[1]["attempts"], 3);
    assert_eq!(tasks[2]["status"], "dead");

    // Nothing is due now: the next run runs nothing.
    env.test()
        .args(&["--once", "--mode", "retry"])
        .stdout_has("none due; the next at")
        .run();
    assert_eq!(env.calls().len(), 3);
}

#[test]
fn tasks_stuck_running_return_to_failed() {
    let env = TestEnv::new();
    env.retry_rules(
        &[],
        "stuck_after = \"1h\"\nbackoff = { initial = \"1h\" }\n",
    );
    let long_ago = memsched::state::timestamp(SystemTime::now() - Duration::from_secs(3 * 3600));
    let recent = memsched::state::timestamp(SystemTime::now() - Duration::from_secs(60));
    env.state_file(
        "task_queue.json",
        &json!({"tasks": [
            {"id": "hung", "step": "ingest", "status": "running", "attempts": 0, "updated_at": long_ago},
            {"id": "busy", "step": "ingest", "status": "running", "attempts": 0, "updated_at": recent},
        ]}),
    );
    env.test().args(&["--once", "--mode", "retry"]).run();
    let tasks = env.state_json("task_queue.json")["tasks"].clone();
    assert_eq!(tasks[0]["status"], "failed");
    assert_eq!(tasks[0]["attempts"], 1);
    assert!(
        tasks[0]["last_error"]
            .as_str()
            .unwrap()
            .starts_with("stuck: running since"),
        "{tasks:#}"
    );
    assert_eq!(
        tasks[1]["status"], "running",
        "a task running for a minute is left alone"
    );
    assert!(
        env.calls().is_empty(),
        "the repaired task waits for its backoff"
    );
}

#[test]
fn a_task_appended_by_another_writer_during_the_run_is_kept() {
    let env = TestEnv::new();
    let queue = env.state("task_queue.json");
    let appender =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/steps/append_task.py");
    env.raw_rules("[actions.retry]\ncommand = [\"python3\", \"/dev/null\"]\n");
    env.state_file(
        "task_queue.json",
        &json!({"version": 2, "tasks": [
            task("writer", "ingest", json!({"note": "kept", "command": ["python3", appender.to_str().unwrap(), queue.to_str().unwrap(), "appended-meanwhile"]})),
            task("other", "ingest", json!({"next_attempt_at": "2999-01-01T00:00:00Z"})),
        ]}),
    );
    env.test().args(&["--once", "--mode", "retry"]).run();
    let doc = env.state_json("task_queue.json");
    assert_eq!(doc["version"], 2);
    let ids: Vec<&str> = doc["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["writer", "other", "appended-meanwhile"]);
    assert_eq!(doc["tasks"][0]["status"], "done");
    assert_eq!(doc["tasks"][0]["note"], "kept");
    assert_eq!(doc["tasks"][2]["added_by"], "append_task.py");
}

#[test]
fn a_tasks_own_command_runs_instead_of_the_retry_command() {
    let env = TestEnv::new();
    env.retry_rules(&[], "");
    let own: Value = serde_json::from_str(&env.step_argv_raw(&["--", "own", "args"])).unwrap();
    env.state_file(
        "task_queue.json",
        &json!([task("t", "ingest", json!({"command": own}))]),
    );
    env.test().args(&["--once", "--mode", "retry"]).run();
    let calls = env.calls();
    assert_eq!(calls[0].args, [b"own".to_vec(), b"args".to_vec()]);
    assert_eq!(calls[0].env["MEMSCHED_TASK_ID"], "t");
}

#[test]
fn consecutive_failures_of_one_step_open_the_circuit_breaker_across_runs() {
    let env = TestEnv::new();
    env.retry_rules(&["--exit", "1"], "max_attempts = 10\nbreaker = { failures = 2, cooldown = \"1h\" }\nbackoff = { initial = \"1s\" }\n");
    let tasks: Vec<Value> = (0..5)
        .map(|i| {
            task(
                &format!("up-{i}"),
                "upload",
                json!({"created_at": format!("2026-11-0{}T00:00:00Z", i + 1)}),
            )
        })
        .chain([task(
            "ingest-1",
            "ingest",
            json!({"created_at": "2026-11-09T00:00:00Z"}),
        )])
        .collect();
    env.state_file("task_queue.json", &json!({"tasks": tasks}));
    let retry = env
        .test()
        .args(&["--once", "--mode", "retry", "--json"])
        .status(1)
        .run()
        .action("retry");
    assert_eq!(
        retried(&env),
        ["up-0", "up-1", "ingest-1"],
        "after two upload failures the rest pause"
    );
    assert_eq!(retry["counts"]["paused_now"], 3, "{retry:#}");
    assert_eq!(retry["details"]["breakers"][0]["step"], "upload");
    assert!(
        retry["summary"]
            .as_str()
            .unwrap()
            .contains("circuit breaker open for upload"),
        "{retry:#}"
    );
    let attempts: Vec<u64> = env.state_json("task_queue.json")["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["attempts"].as_u64().unwrap())
        .collect();
    assert_eq!(
        attempts,
        [2, 2, 1, 1, 1, 2],
        "paused tasks keep their attempts"
    );

    // The breaker is remembered: a later run leaves the step alone until the cool-down ends.
    let retry = env
        .test()
        .args(&["--once", "--mode", "retry", "--json"])
        .run()
        .action("retry");
    assert_eq!(retry["counts"]["paused"], 3, "{retry:#}");
    assert_eq!(env.calls().len(), 3);

    // The watchdog reports the pause, and an open breaker is degraded health: exit 1.
    let health = env
        .test()
        .args(&["status", "--json"])
        .status(1)
        .run()
        .record();
    assert_eq!(health["breakers"][0]["step"], "upload");
}

#[test]
fn a_malformed_queue_fails_retry_untouched_while_other_actions_run() {
    let env = TestEnv::new();
    let retry = env.step_argv_raw(&["--", "{task_id}"]);
    let upload = env.step_argv_raw(&["--", "{path}"]);
    env.raw_rules(&format!(
        "[actions.retry]\ncommand = {retry}\n[actions.upload]\ncommand = {upload}\n"
    ));
    let broken = "{\"tasks\": [\n  {\"id\": \"a\" \"step\": \"ingest\"}\n]}\n";
    let path = env.write("state/task_queue.json", broken);
    env.data_file("a.txt", "a");
    env.state_file(
        "upload_log.json",
        &json!([{"path": "Data/a.txt", "status": "pending"}]),
    );
    let run = env
        .test()
        .args(&["--once", "--mode", "retry", "--mode", "upload", "--json"])
        .status(1)
        .run();
    let retry = run.action("retry");
    assert_eq!(retry["outcome"], "failed");
    assert!(
        retry["error"]
            .as_str()
            .unwrap()
            .contains("task_queue.json:2:14: state file does not parse"),
        "{retry:#}"
    );
    assert_eq!(run.action("upload")["outcome"], "ran");
    assert_eq!(env.sent(), [bytes(&env.data().join("a.txt"))]);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), broken);
}

#[test]
fn an_ingest_failure_retried_to_success_is_recorded_by_the_next_ingest_without_resending() {
    let env = TestEnv::new();
    let marker = env.home().join("outage");
    std::fs::write(&marker, "").unwrap();
    let ingest = env.step_argv(&["--fail-while", marker.to_str().unwrap(), "--"]);
    let retry = env.step_argv_raw(&["--", "{task_id}"]);
    env.raw_rules(&format!(
        "[actions.ingest]\ncommand = {ingest}\nsettle = \"0s\"\n[actions.retry]\ncommand = {retry}\n\
         backoff = {{ initial = \"0s\" }}\n"
    ));
    let file = env.data_file("note.txt", "remember this");
    env.test()
        .args(&["--once", "--mode", "ingest"])
        .status(1)
        .run();
    assert_eq!(
        env.state_json("task_queue.json")["tasks"][0]["status"],
        "failed"
    );

    std::fs::remove_file(&marker).unwrap();
    env.test().args(&["--once", "--mode", "retry"]).run();
    // The ingest step ran again on just that file (due at once: initial 0s).
    assert_eq!(env.calls()[1].args, [bytes(&file)]);
    assert_eq!(
        env.state_json("task_queue.json")["tasks"][0]["status"],
        "done"
    );

    let ingest = env
        .test()
        .args(&["--once", "--mode", "ingest", "--json"])
        .run()
        .action("ingest");
    assert_eq!(ingest["counts"]["known_content"], 1, "{ingest:#}");
    assert!(
        ingest["reasons"][0]
            .as_str()
            .unwrap()
            .contains("ingested by the retry of task ingest:note.txt"),
        "{ingest:#}"
    );
    assert_eq!(env.calls().len(), 2, "the file is not sent a third time");
    assert!(env.state_json("ingest_hash.json")["files"]["note.txt"].is_object());
}
