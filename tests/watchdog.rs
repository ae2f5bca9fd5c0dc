//! The watchdog action and `memsched status`.

use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use crate::util::*;

#[test]
fn a_healthy_pipeline_is_ok_and_status_exits_0() {
    let env = TestEnv::new();
    env.raw_rules("[actions.watchdog]\n");
    let out = env.run(&["--once"]);
    assert_exit(&out, 0);
    let state = env.state_json("watchdog_state.json");
    assert_eq!(state["status"], "ok");
    let out = env.run(&["status"]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).starts_with("memsched status: OK"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn dead_tasks_and_unreadable_files_make_it_failing_and_status_exit_1() {
    let env = TestEnv::new();
    let watchdog = env.step_argv_raw(&[]);
    env.raw_rules(&format!("[actions.watchdog]\ncommand = {watchdog}\n"));
    env.state_file(
        "task_queue.json",
        &json!({"tasks": [{"id": "t1", "step": "ingest", "status": "dead"}, {"id": "t2", "step": "ingest", "status": "failed"}]}),
    );
    env.write("state/upload_log.json", "not json");
    env.state_file(
        "watchdog_state.json",
        &json!({"status": "ok", "note": "kept"}),
    );
    let out = env.run(&["--once", "--mode", "watchdog"]);
    assert_exit(&out, 0);
    let state = env.state_json("watchdog_state.json");
    assert_eq!(state["status"], "failing");
    assert_eq!(state["note"], "kept");
    assert_eq!(state["dead_tasks"], json!(["t1"]));
    assert_eq!(state["tasks"]["failed"], 1);
    let problems: Vec<&str> = state["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(
        problems[0].starts_with("state file does not parse:"),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.starts_with("1 dead tasks")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p == &"1 failed tasks wait for a retry"),
        "{problems:?}"
    );
    // The user's watchdog command ran after the state was written, and was told the verdict.
    assert_eq!(env.calls()[0].env["MEMSCHED_HEALTH"], "failing");

    let out = env.run(&["status", "--json"]);
    assert_exit(&out, 1);
    let health: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(health["status"], "failing");
    let text = stdout(&env.run(&["status"]));
    assert!(text.contains("FAILING"), "{text}");
    assert!(text.contains("1 dead, 1 failed"), "{text}");
}
