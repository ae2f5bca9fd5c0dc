//! What the operator sees is true and gives them levers (issue 20): log severities that fit
//! journald, locks as the kernel holds them, no silent no-ops, and `memsched tasks`.

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::util::*;

/// The log lines at syslog priority `p` (`<3>` error … `<7>` debug).
fn at(log: &str, p: u8) -> Vec<&str> {
    let prefix = format!("<{p}>");
    log.lines().filter(|l| l.starts_with(&prefix)).collect()
}

/// Issue 20 item 1: `journalctl -p warning` must show a failed step with its failed files,
/// not the stop that was asked for; a tick that found nothing says nothing at info.
#[test]
fn issue_20_a_failure_is_an_error_with_its_files_a_stop_is_info_a_quiet_tick_is_silent() {
    let env = TestEnv::new();
    let step = env.step_argv(&["--fail", "bad", "--"]);
    env.raw_rules(&format!(
        "tick = \"1s\"\n[actions.ingest]\ncommand = {step}\nsettle = \"0s\"\n"
    ));
    env.data_file("bad.txt", "b");
    env.data_file("good.txt", "g");
    let log = env.home().join("journal.log");
    let file = std::fs::File::create(&log).unwrap();
    let meta = file.metadata().unwrap();
    // stderr is "the journal": its device and inode are what JOURNAL_STREAM names.
    let mut child = env
        .command(&[])
        .env("RUST_LOG", "memsched=debug")
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .stdout(std::process::Stdio::null())
        .stderr(file)
        .spawn()
        .unwrap();
    let text = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_until(
        "two ticks are recorded",
        Duration::from_secs(30),
        &text,
        || env.runs().iter().filter(|r| r["trigger"] == "tick").count() >= 2,
    );
    kill(
        Pid::from_raw(i32::try_from(child.id()).unwrap()),
        Signal::SIGTERM,
    )
    .unwrap();
    wait_until("the watcher exits", Duration::from_secs(20), &text, || {
        child.try_wait().unwrap().is_some()
    });
    let text = text();
    let errors = at(&text, 3).join("\n");
    assert!(errors.contains("ingest: failed"), "{text}");
    assert!(errors.contains("bad.txt: refused bad.txt"), "{text}");
    let warnings = at(&text, 4).join("\n");
    assert!(!warnings.contains("stopping"), "{text}");
    assert!(
        at(&text, 6).join("\n").contains("SIGTERM: stopping"),
        "{text}"
    );
    let info = at(&text, 6);
    assert!(
        !info
            .iter()
            .any(|l| l.contains("run (tick)") || l.contains("nothing to do")),
        "a quiet tick logged at info:\n{text}"
    );
}

/// Issue 20 item 2: beside an idle watcher no action's lock is held, whatever pid its file
/// still holds; `status` and watchdog_state.json must not say one is.
#[test]
fn issue_20_status_beside_an_idle_watcher_shows_no_action_running() {
    let env = TestEnv::new();
    env.rules(&["--"], "");
    env.data_file("a.txt", "a");
    let watcher = env.watch(&["--poll"], &[]);
    let run = env
        .test()
        .args(&["status"])
        .stdout_has(&format!("watcher    running (pid {}", watcher.pid()))
        .run();
    // The watcher really holds scheduler.lock; no action's lock is held between runs.
    assert!(
        !run.stdout().contains("running    ingest"),
        "{}",
        run.stdout()
    );
    let run = env.test().args(&["--once", "--mode", "watchdog"]).run();
    assert!(
        env.state_json("watchdog_state.json")["locks"]
            .as_object()
            .is_none_or(|l| !l.contains_key("ingest")),
        "{}",
        run.stdout()
    );
}

/// Issue 20 item 2: after a `kill -9` of the watcher, the step it left running holds the
/// action's lock (it inherited it); the message names that step, not the dead watcher.
#[test]
fn issue_20_after_kill_9_of_the_watcher_the_orphaned_step_is_named_as_the_holder() {
    let env = TestEnv::new();
    env.rules(&["--sleep", "60", "--"], "");
    env.data_file("a.txt", "a");
    let mut cmd = env.command(&["--poll"]);
    let mut watcher = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let calls = env.log_dir();
    wait_until(
        "the step starts",
        Duration::from_secs(20),
        &String::new,
        || !env.calls().is_empty(),
    );
    let name = std::fs::read_dir(&calls)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let call: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(name).unwrap()).unwrap();
    let step = i32::try_from(call["pid"].as_i64().unwrap()).unwrap();
    watcher.kill().unwrap();
    watcher.wait().unwrap();
    let status = env.test().args(&["status"]).run();
    let once = env
        .test()
        .args(&["--once", "--mode", "ingest"])
        .status(3)
        .run();
    let _ = kill(Pid::from_raw(step), Signal::SIGKILL);
    assert!(
        status
            .stdout()
            .contains(&format!("running    ingest (pid {step} holds ingest.lock)")),
        "{}",
        status.stdout()
    );
    assert!(
        once.stdout().contains(&format!("pid {step} holds")),
        "{}",
        once.stdout()
    );
}

/// Issue 20 item 3: with ingest and no `[actions.retry]`, a file the step failed on is
/// never sent again; `check` must warn of it and `status` must not promise a retry.
#[test]
fn issue_20_ingest_without_retry_is_warned_by_check_and_told_truly_by_status() {
    let run = crate::harness::Test::new()
        .rules(&["--fail", "bad", "--"], "")
        .data("bad.txt", "b")
        .args(&["--once", "--mode", "ingest"])
        .status(1)
        .run();
    let run = run
        .then()
        .args(&["status"])
        .status(1)
        .stdout_has("never retried: no [actions.retry] is configured")
        .stdout_has("failed tasks are never retried: no [actions.retry] is configured")
        .run();
    assert!(!run.stdout().contains("next retry"), "{}", run.stdout());
    run.then()
        .args(&["check"])
        .stderr_has("memsched: warning: ingest is configured without [actions.retry]")
        .run();
}

/// Issue 20 item 6: the watcher watches upload sources itself (outside data_dir it wakes
/// upload on them), so `check` must not warn that no rule can watch them.
#[test]
fn issue_20_check_does_not_warn_falsely_about_upload_sources_the_watcher_watches() {
    let env = TestEnv::new();
    let step = env.step_argv(&["--", "{path}"]);
    env.raw_rules(&format!(
        "[actions.upload]\ncommand = {step}\nremote = \"r:\"\nsources = [\"index/*.json\", \"state/*.json\"]\n"
    ));
    let run = env.test().args(&["check"]).run();
    assert!(!run.stderr().contains("index/*.json"), "{}", run.stderr());
    assert!(!run.stderr().contains("state/*.json"), "{}", run.stderr());
    // A source outside the pipeline home is not watched: that is still worth a warning.
    env.raw_rules(&format!(
        "[actions.upload]\ncommand = {step}\nremote = \"r:\"\nsources = [\"../elsewhere/*.json\"]\n"
    ));
    env.test()
        .args(&["check"])
        .stderr_has("upload source \"../elsewhere/*.json\" lies outside the pipeline home")
        .run();
}

/// Issue 20 item 7: a forgotten pause marker is the first thing a daily user trips on;
/// `status` (not only `--json`) must say the watcher is paused, since when, and how to end it.
#[test]
fn issue_20_status_says_the_watcher_is_paused_and_how_to_resume() {
    let env = TestEnv::new();
    env.rules(&["--"], "");
    let watcher = env.watch(&["--poll"], &[]);
    env.write("Data/.memsched-pause", "");
    wait_until(
        "the pause shows in watchdog_state.json",
        Duration::from_secs(20),
        &|| watcher.log(),
        || !env.state_json("watchdog_state.json")["watcher"]["paused_since"].is_null(),
    );
    env.test()
        .args(&["status"])
        .stdout_has("  paused     since ")
        .stdout_has("runs wait until {home}/Data/.memsched-pause is removed")
        .run();
    drop(watcher);
    // With no watcher, the marker still stands in the way of the next one.
    env.test()
        .args(&["status"])
        .stdout_has(
            "  paused     {home}/Data/.memsched-pause exists: a watcher waits until it is removed",
        )
        .run();
}

/// Issue 20 item 9: `{files}` with a stdin mode became nothing; it is refused at load,
/// as `list-file` without `{list}` is.
#[test]
fn issue_20_files_placeholder_with_a_stdin_mode_is_refused_at_load() {
    crate::harness::Test::new()
        .raw_rules("[actions.ingest]\ncommand = [\"ingest\", \"{files}\"]\npass_files = \"stdin-lines\"\n")
        .args(&["check"])
        .status(2)
        .stderr_has("watch-rules.toml:2:11: [actions.ingest] command has {files}, but pass_files = \"stdin-lines\" sends the files on stdin: {files} would be empty; remove it")
        .run();
}

/// Issue 20 item 8: `log N` named another run once `log_keep` was reached; every record
/// carries a stable `seq`, and records written before it keep the number they had.
#[test]
fn issue_20_run_numbers_stay_with_their_runs_past_log_keep() {
    let env = TestEnv::new();
    env.rules(&["--"], "");
    // Two records of an earlier version, without seq: today they are runs 1 and 2.
    let old = |pid: u32| {
        serde_json::json!({"trigger": "cron", "pid": pid, "started_at": "2026-01-01T00:00:00.000Z",
            "actions": [{"action": "ingest", "outcome": "nothing-to-do"}]})
    };
    env.state_file(
        "scheduler_log.json",
        &serde_json::json!({"runs": [old(11), old(12)]}),
    );
    let step = env.step_argv(&["--"]);
    env.raw_rules(&format!(
        "log_keep = 2\n[actions.ingest]\ncommand = {step}\nsettle = \"0s\"\n"
    ));
    env.test().args(&["--once"]).run();
    // Run 2 is still the run with pid 12, and the new one is run 3.
    let two = env.test().args(&["log", "2", "--json"]).run().record();
    assert_eq!(two["pid"], 12, "{two:#}");
    let three = env.test().args(&["log", "3", "--json"]).run().record();
    assert_eq!(three["seq"], 3, "{three:#}");
    env.test().args(&["--once"]).run();
    env.test()
        .args(&["log", "2"])
        .status(2)
        .stderr_has("no run 2 in")
        .stderr_has("it keeps runs 3 to 4")
        .run();
    let table = env.test().args(&["log"]).run().stdout();
    let numbers: Vec<&str> = table
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.chars().all(|c| c.is_ascii_digit()))
        .collect();
    assert_eq!(numbers, ["3", "4"], "{table}");
}

fn queue() -> serde_json::Value {
    serde_json::json!({"other_tool": {"keep": true}, "tasks": [
        {"id": "t1", "step": "embed", "status": "dead", "attempts": 5,
         "last_error": "exit 3: bad input", "next_attempt_at": "2026-01-01T00:00:00Z", "mine": 1},
        {"id": "t2", "step": "embed", "status": "done", "attempts": 1},
        {"id": "t3", "step": "embed", "status": "failed", "attempts": 2},
        {"id": "t4", "step": "index", "status": "done", "attempts": 1},
    ]})
}

fn ids(env: &TestEnv) -> Vec<String> {
    env.state_json("task_queue.json")["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Issue 20 item 10: a lever for tasks. `tasks` lists them (`--json` too), `revive` makes
/// a dead task pending with fresh attempts, `drop` removes one, `clear-done` the done ones;
/// every other field and key is kept, and an unknown id changes nothing.
#[test]
fn issue_20_tasks_lists_revives_drops_and_clears_done_tasks() {
    let env = TestEnv::new();
    env.rules(&["--"], "");
    env.state_file("task_queue.json", &queue());
    env.test()
        .args(&["tasks"])
        .stdout_has("t1")
        .stdout_has("dead")
        .stdout_has("exit 3: bad input")
        .run();
    let listed = env.test().args(&["tasks", "--json"]).run().record();
    assert_eq!(listed["tasks"].as_array().unwrap().len(), 4, "{listed:#}");
    let dead = env
        .test()
        .args(&["tasks", "--status", "dead", "--json"])
        .run()
        .record();
    assert_eq!(dead["tasks"].as_array().unwrap().len(), 1, "{dead:#}");

    env.test()
        .args(&["tasks", "revive", "t1", "nope"])
        .status(2)
        .stderr_has("nope")
        .run();
    assert_eq!(
        env.state_json("task_queue.json")["tasks"][0]["status"],
        "dead"
    );

    env.test()
        .args(&["tasks", "revive", "t1"])
        .stdout_has("revived t1")
        .run();
    let t1 = env.state_json("task_queue.json")["tasks"][0].clone();
    assert_eq!(t1["status"], "pending", "{t1:#}");
    assert_eq!(t1["attempts"], 0, "{t1:#}");
    assert!(t1.get("next_attempt_at").is_none(), "{t1:#}");
    assert_eq!(t1["mine"], 1, "{t1:#}");
    env.test()
        .args(&["tasks", "revive", "t2"])
        .status(2)
        .stderr_has("t2 is done")
        .run();

    env.test()
        .args(&["tasks", "drop", "t3"])
        .stdout_has("dropped t3")
        .run();
    assert_eq!(ids(&env), ["t1", "t2", "t4"]);
    env.test()
        .args(&["tasks", "clear-done"])
        .stdout_has("cleared 2 done tasks")
        .run();
    assert_eq!(ids(&env), ["t1"]);
    assert_eq!(
        env.state_json("task_queue.json")["other_tool"]["keep"],
        true
    );
}

/// Issue 20 item 10: the lever writes under task_queue.json's lock and re-reads the queue
/// there, so a change another writer made while it waited is never lost.
#[test]
fn issue_20_tasks_waits_for_the_queue_lock_and_keeps_another_writers_change() {
    let env = TestEnv::new();
    env.rules(&["--"], "");
    env.state_file("task_queue.json", &queue());
    let lock_file = env.state("task_queue.json.lock");
    let held = memsched::os::lock::try_acquire(&lock_file).unwrap();
    let child = env
        .command(&["tasks", "drop", "t3"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // It tries the lock, then sleeps before trying again: seen asleep (nanosleep or
    // clock_nanosleep, x86_64 or aarch64), it is waiting.
    let syscall = format!("/proc/{}/syscall", child.id());
    wait_until(
        "memsched waits for the queue's lock",
        Duration::from_secs(20),
        &String::new,
        || {
            std::fs::read_to_string(&syscall).is_ok_and(|s| {
                matches!(
                    s.split_whitespace().next(),
                    Some("35" | "230" | "101" | "115")
                )
            })
        },
    );
    // Another writer, holding the lock, adds a task.
    let mut q = queue();
    q["tasks"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"id": "t5", "status": "pending"}));
    env.state_file("task_queue.json", &q);
    drop(held);
    let out = child.wait_with_output().unwrap();
    assert_exit(&out, 0);
    assert_eq!(ids(&env), ["t1", "t2", "t4", "t5"]);
}
