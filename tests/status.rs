//! `memsched status` when it is needed most (issue 11): a broken rules edit, failed and
//! dead tasks with their errors and next retry, the watcher running or not.

use serde_json::json;

use crate::harness::Test;
use crate::util::TestEnv;

#[test]
fn issue_11_status_shows_the_health_it_can_read_when_the_rules_do_not_load() {
    Test::new()
        .raw_rules("[actions.ingest]\ncommand = [\"x\"\n")
        .state_file(
            "task_queue.json",
            &json!({"tasks": [{"id": "t1", "step": "embed", "status": "failed", "attempts": 1}]}),
        )
        .args(&["status"])
        .status(1)
        .stdout_has("memsched status: DEGRADED")
        .stdout_has("  tasks      1 failed\n")
        .stdout_has("    - the rules do not load: {home}/watch-rules.toml:")
        .run();
}

#[test]
fn issue_11_status_names_failed_and_dead_tasks_with_their_error_and_next_retry() {
    let soon = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(70);
    let run = Test::new()
        // A retry action takes failed tasks on again (without one, none is promised).
        .rules(
            &["--"],
            "[actions.retry]\ncommand = [\"true\", \"{task_id}\"]\n",
        )
        .state_file(
            "task_queue.json",
            &json!({"tasks": [
                {"id": "t1", "step": "embed", "status": "failed", "attempts": 2,
                 "last_error": "exit 1: quota exceeded", "next_attempt_at": soon.to_string()},
                {"id": "t2", "step": "embed", "status": "dead", "attempts": 5,
                 "last_error": "exit 3: bad input"},
            ]}),
        )
        .args(&["status"])
        .status(1)
        .stdout_has(
            "    failed t1 (embed), attempt 2 of 5: exit 1: quota exceeded; next retry in 6",
        )
        .stdout_has("    dead t2 (embed), attempt 5 of 5: exit 3: bad input\n")
        .stdout_has("1 dead task (out of attempts): t2")
        .run();
    // Not configured, nothing logged: no uploads line.
    assert!(!run.stdout().contains("uploads"), "{}", run.stdout());
}

#[test]
fn issue_11_a_watcher_record_left_by_a_gone_process_is_shown_as_stale() {
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let pid = gone.id();
    gone.wait().unwrap();
    Test::new()
        .rules(&["--"], "")
        .state_file(
            "watchdog_state.json",
            &json!({"watcher": {"pid": pid, "kind": "inotify", "updated_at": "2026-01-01T00:00:00Z"}}),
        )
        .args(&["status"])
        .stdout_has(&format!("  watcher    not running (stale record from pid {pid})\n"))
        .run();
    // A live pid that is not memsched (this test) is no watcher either.
    let me = std::process::id();
    Test::new()
        .rules(&["--"], "")
        .state_file(
            "watchdog_state.json",
            &json!({"watcher": {"pid": me, "kind": "inotify", "rules_error": "old"}}),
        )
        .args(&["status"])
        .stdout_has(&format!("not running (stale record from pid {me})"))
        .run();
}

#[test]
fn issue_11_status_says_a_watcher_runs_with_its_pid_and_how_it_watches() {
    let env = TestEnv::new();
    env.rules(&["--"], "");
    let watcher = env.watch(&["--poll"], &[]);
    let pid = watcher.pid();
    env.test()
        .args(&["status"])
        .stdout_has(&format!("  watcher    running (pid {pid}, polling"))
        .run();
}
