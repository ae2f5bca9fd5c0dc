//! The watchdog action and `memsched status`.

use pretty_assertions::assert_eq;
use serde_json::json;

use crate::harness::Test;
use crate::util::TestEnv;

#[test]
fn a_healthy_pipeline_is_ok_and_status_exits_0() {
    let run = Test::new()
        .raw_rules("[actions.watchdog]\n")
        .args(&["--once"])
        .run();
    let state = run.env().state_json("watchdog_state.json");
    assert_eq!(state["status"], "ok");
    let status = run.then().args(&["status"]).run().stdout();
    assert!(status.starts_with("memsched status: OK"), "{status}");
}

#[test]
fn dead_tasks_and_unreadable_files_make_it_failing_and_status_exit_1() {
    let env = TestEnv::new();
    let watchdog = env.step_argv_raw(&[]);
    env.test()
        .raw_rules(&format!("[actions.watchdog]\ncommand = {watchdog}\n"))
        .state_file(
            "task_queue.json",
            &json!({"tasks": [{"id": "t1", "step": "ingest", "status": "dead"}, {"id": "t2", "step": "ingest", "status": "failed"}]}),
        )
        .write("state/upload_log.json", "not json")
        .state_file(
            "watchdog_state.json",
            &json!({"status": "ok", "note": "kept"}),
        )
        .args(&["--once", "--mode", "watchdog"])
        .run();
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
        problems[0].contains("/state/upload_log.json:1:2: state file does not parse"),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("1 dead task (out of attempts)")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p == &"1 failed task waits for a retry"),
        "{problems:?}"
    );
    // The user's watchdog command ran after the state was written, and was told the verdict.
    assert_eq!(env.calls()[0].env["MEMSCHED_HEALTH"], "failing");

    let health = env
        .test()
        .args(&["status", "--json"])
        .status(1)
        .run()
        .record();
    assert_eq!(health["status"], "failing");
    env.test()
        .args(&["status"])
        .status(1)
        .stdout_has("FAILING")
        .stdout_has("1 dead, 1 failed")
        .run();
}
