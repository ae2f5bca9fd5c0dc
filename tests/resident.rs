//! Resident steps (issue 19), through the real binary and a resident step double
//! (tests/steps/resident.py) that records its pid per batch and fails loudly when two
//! copies live at once: one process serves many batches, in the watcher and in `--once`;
//! a timeout, a crash, a `kill -9` of memsched and SIGTERM each keep the promises of
//! one-shot steps; an answer naming a file not in its batch records nothing.

use std::path::Path;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use crate::util::*;

const DEADLINE: Duration = Duration::from_secs(30);

/// The rules: the resident double as ingest (one file per batch), `extra` in its table,
/// and (for the watcher) a data rule for every .txt.
fn resident_rules(env: &TestEnv, extra: &str) {
    resident_rules_argv(env, &[], extra);
}

/// [`resident_rules`] with `more` arguments after the double's log folder.
fn resident_rules_argv(env: &TestEnv, more: &[&str], extra: &str) {
    let step = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/steps/resident.py");
    let mut argv = vec![
        "python3".to_owned(),
        step.display().to_string(),
        env.log_dir().display().to_string(),
    ];
    argv.extend(more.iter().map(|a| (*a).to_owned()));
    let argv = serde_json::to_string(&argv).unwrap();
    let batch = if extra.contains("batch_size") {
        ""
    } else {
        "batch_size = 1"
    };
    env.raw_rules(&format!(
        "debounce = \"100ms\"\ntick = \"1h\"\n\
         [actions.ingest]\ncommand = {argv}\nresident = true\nsettle = \"0s\"\n{batch}\n{extra}\n\
         [[rules]]\nname = \"memories\"\nin = \"data\"\npaths = [\"**/*.txt\"]\nrun = [\"ingest\"]\n"
    ));
}

/// The lines of a JSON-lines file the double writes.
fn lines(env: &TestEnv, name: &str) -> Vec<Value> {
    std::fs::read_to_string(env.log_dir().join(name))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Lets a batch holding a SLOW file finish (the double waits for this file).
fn release(env: &TestEnv) {
    std::fs::write(env.log_dir().join("release"), "").unwrap();
}

/// The pid that served the batch holding `file`.
fn pid_of(env: &TestEnv, file: &str) -> Option<u64> {
    lines(env, "batches.jsonl")
        .iter()
        .find(|b| b["files"].to_string().contains(file))
        .and_then(|b| b["pid"].as_u64())
}

/// Whether `pid` is gone (or a zombie, which holds nothing).
fn gone(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
        stat.rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z'))
    })
}

fn no_overlap(env: &TestEnv) {
    assert!(
        !env.log_dir().join("OVERLAP").exists(),
        "two copies of the resident step ran at once: {:?}",
        lines(env, "OVERLAP")
    );
}

/// The files ingest_hash.json records (none when it is not written yet).
fn recorded(env: &TestEnv) -> Vec<String> {
    if !env.state("ingest_hash.json").exists() {
        return Vec::new();
    }
    env.state_json("ingest_hash.json")["files"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

#[test]
fn issue_19_once_with_a_resident_step_ingests_in_one_process_gone_at_exit() {
    let env = TestEnv::new();
    resident_rules(&env, "");
    let run = env
        .test()
        .data("a.txt", "alpha")
        .data("b.txt", "beta")
        .args(&["--once", "--mode", "ingest"])
        .stdout_has("2 done, 0 failed")
        .run();
    let starts = lines(run.env(), "starts.jsonl");
    assert_eq!(starts.len(), 1, "one process for both batches: {starts:?}");
    let pid = starts[0]["pid"].as_u64().unwrap();
    assert_eq!(lines(&env, "batches.jsonl").len(), 2);
    assert_eq!(pid_of(&env, "a.txt"), Some(pid));
    assert_eq!(pid_of(&env, "b.txt"), Some(pid));
    assert_eq!(
        lines(&env, "exits.jsonl"),
        [serde_json::json!({"pid": pid})],
        "the step ended at EOF before memsched exited"
    );
    assert!(gone(pid), "the step outlived memsched --once");
    assert_eq!(recorded(&env), ["a.txt", "b.txt"]);
    no_overlap(&env);
}

#[test]
fn issue_19_the_watcher_keeps_one_resident_process_across_saves() {
    let env = TestEnv::new();
    resident_rules(&env, "");
    let w = env.watch(&[], &[]);
    env.write("Data/one.txt", "first save");
    wait_until("one.txt is served", DEADLINE, &|| w.log(), || {
        pid_of(&env, "one.txt").is_some()
    });
    env.write("Data/two.txt", "second save");
    wait_until("two.txt is served", DEADLINE, &|| w.log(), || {
        pid_of(&env, "two.txt").is_some()
    });
    assert_eq!(pid_of(&env, "one.txt"), pid_of(&env, "two.txt"));
    assert_eq!(lines(&env, "starts.jsonl").len(), 1);
    no_overlap(&env);
}

#[test]
fn issue_19_a_batch_timeout_fails_its_files_and_the_next_batch_gets_a_fresh_process() {
    let env = TestEnv::new();
    resident_rules(&env, "timeout = \"1s\"");
    env.test()
        .data("a.txt", "alpha")
        .data("b.txt", "HANG")
        .data("c.txt", "gamma")
        .args(&["--once", "--mode", "ingest"])
        .status(1)
        .stdout_has("2 done, 1 failed")
        .run();
    let (a, c) = (pid_of(&env, "a.txt"), pid_of(&env, "c.txt"));
    assert!(a.is_some() && c.is_some());
    assert_ne!(a, c, "the batch after a timeout runs in a fresh process");
    let b = pid_of(&env, "b.txt").unwrap();
    assert!(gone(b), "the timed-out step was not ended");
    let tasks = env.state_json("task_queue.json").to_string();
    assert!(tasks.contains("ingest:b.txt"), "{tasks}");
    assert!(tasks.contains("timed out"), "{tasks}");
    assert_eq!(recorded(&env), ["a.txt", "c.txt"]);
    no_overlap(&env);
}

#[test]
fn issue_19_a_step_that_dies_mid_batch_fails_its_batch_and_a_new_process_serves_the_next() {
    let env = TestEnv::new();
    resident_rules(&env, "");
    env.test()
        .data("a.txt", "alpha")
        .data("b.txt", "CRASH")
        .data("c.txt", "gamma")
        .args(&["--once", "--mode", "ingest"])
        .status(1)
        .stdout_has("2 done, 1 failed")
        .run();
    let (a, c) = (pid_of(&env, "a.txt"), pid_of(&env, "c.txt"));
    assert!(a.is_some() && c.is_some());
    assert_ne!(a, c);
    let tasks = env.state_json("task_queue.json").to_string();
    assert!(tasks.contains("ingest:b.txt"), "{tasks}");
    assert!(tasks.contains("ended before it answered"), "{tasks}");
    assert!(tasks.contains("exit 9"), "{tasks}");
    assert_eq!(recorded(&env), ["a.txt", "c.txt"]);
}

#[test]
fn issue_19_an_answer_naming_a_file_not_in_its_batch_records_nothing() {
    let env = TestEnv::new();
    resident_rules(&env, "batch_size = 10");
    let run = env
        .test()
        .data("a.txt", "alpha")
        .data("b.txt", "BADPATH")
        .args(&["--once", "--mode", "ingest", "--json"])
        .status(1)
        .run();
    let ingest = run.action("ingest");
    assert!(
        ingest.to_string().contains("no file of its batch"),
        "{ingest:#}"
    );
    assert!(recorded(&env).is_empty(), "{:?}", recorded(&env));
}

#[test]
fn issue_19_kill_9_of_memsched_the_step_ends_at_eof_and_no_second_copy_starts() {
    let env = TestEnv::new();
    resident_rules(&env, "");
    env.data_file("a.txt", "alpha");
    let mut w = env.watch(&[], &[]);
    wait_until("a.txt is served", DEADLINE, &|| w.log(), || {
        pid_of(&env, "a.txt").is_some()
    });
    let pid = pid_of(&env, "a.txt").unwrap();
    env.write("Data/slow.txt", "SLOW");
    wait_until("slow.txt is in flight", DEADLINE, &|| w.log(), || {
        pid_of(&env, "slow.txt").is_some()
    });
    kill(
        Pid::from_raw(i32::try_from(w.pid()).unwrap()),
        Signal::SIGKILL,
    )
    .unwrap();
    w.wait_exit(DEADLINE);
    // The orphaned step still holds ingest.lock: a new memsched does not start a second.
    env.test()
        .args(&["--once", "--mode", "ingest"])
        .status(3)
        .stdout_has("holds")
        .run();
    release(&env);
    wait_until(
        "the orphaned step ends at EOF",
        DEADLINE,
        &String::new,
        || gone(pid),
    );
    assert!(
        lines(&env, "exits.jsonl").iter().any(|e| e["pid"] == pid),
        "the step did not end by itself at EOF"
    );
    // What was in flight is sent again, by a fresh step.
    env.test()
        .args(&["--once", "--mode", "ingest"])
        .stdout_has("1 done, 0 failed")
        .run();
    assert_eq!(recorded(&env), ["a.txt", "slow.txt"]);
    no_overlap(&env);
}

#[test]
fn issue_19_sigterm_lets_the_batch_in_flight_finish_and_be_recorded_then_ends_the_step() {
    let env = TestEnv::new();
    resident_rules(&env, "");
    let mut w = env.watch(&[], &[]);
    env.write("Data/slow.txt", "SLOW");
    wait_until("slow.txt is in flight", DEADLINE, &|| w.log(), || {
        pid_of(&env, "slow.txt").is_some()
    });
    let pid = pid_of(&env, "slow.txt").unwrap();
    kill(
        Pid::from_raw(i32::try_from(w.pid()).unwrap()),
        Signal::SIGTERM,
    )
    .unwrap();
    // Still in flight when the signal came: only now may it finish.
    release(&env);
    let status = w.wait_exit(DEADLINE);
    assert!(
        gone(pid),
        "the step outlived the watcher\n--- log\n{}",
        w.log()
    );
    assert!(
        lines(&env, "exits.jsonl").iter().any(|e| e["pid"] == pid),
        "the step was not ended by EOF"
    );
    assert_eq!(recorded(&env), ["slow.txt"], "{}", w.log());
    assert!(matches!(status, Some(0 | 130)), "{status:?}\n{}", w.log());
    no_overlap(&env);
}

#[test]
fn issue_19_idle_exit_closes_the_step_after_a_quiet_spell_and_frees_the_lock() {
    let env = TestEnv::new();
    resident_rules(&env, "idle_exit = \"300ms\"");
    let w = env.watch(&[], &[]);
    env.write("Data/one.txt", "first save");
    wait_until("one.txt is served", DEADLINE, &|| w.log(), || {
        pid_of(&env, "one.txt").is_some()
    });
    let first = pid_of(&env, "one.txt").unwrap();
    wait_until("the idle step exits at EOF", DEADLINE, &|| w.log(), || {
        lines(&env, "exits.jsonl").iter().any(|e| e["pid"] == first)
    });
    wait_until("the step is gone", DEADLINE, &|| w.log(), || gone(first));
    // ingest.lock is free again: another memsched may ingest.
    env.test()
        .args(&["--once", "--mode", "ingest"])
        .stdout_has("ingest    ")
        .run();
    env.write("Data/two.txt", "second save");
    wait_until("two.txt is served", DEADLINE, &|| w.log(), || {
        pid_of(&env, "two.txt").is_some()
    });
    assert_ne!(
        pid_of(&env, "two.txt"),
        Some(first),
        "a fresh step after idle_exit"
    );
    no_overlap(&env);
}

#[test]
fn issue_19_a_reload_with_a_changed_command_starts_a_fresh_step() {
    let env = TestEnv::new();
    resident_rules(&env, "");
    let w = env.watch(&[], &[]);
    env.write("Data/one.txt", "first save");
    wait_until("one.txt is served", DEADLINE, &|| w.log(), || {
        pid_of(&env, "one.txt").is_some()
    });
    let first = pid_of(&env, "one.txt").unwrap();
    resident_rules_argv(&env, &["--changed"], "");
    wait_until("the rules are reloaded", DEADLINE, &|| w.log(), || {
        w.log().contains("rules reloaded")
    });
    wait_until("the old step is closed", DEADLINE, &|| w.log(), || {
        lines(&env, "exits.jsonl").iter().any(|e| e["pid"] == first)
    });
    env.write("Data/two.txt", "second save");
    wait_until("two.txt is served", DEADLINE, &|| w.log(), || {
        pid_of(&env, "two.txt").is_some()
    });
    assert_ne!(pid_of(&env, "two.txt"), Some(first));
    no_overlap(&env);
}

#[test]
fn issue_19_a_reload_does_not_wait_for_a_resident_step_slow_to_leave() {
    let env = TestEnv::new();
    resident_rules_argv(&env, &["--linger"], "");
    let w = env.watch(&[], &[]);
    env.write("Data/one.txt", "first save");
    wait_until("one.txt is served", DEADLINE, &|| w.log(), || {
        pid_of(&env, "one.txt").is_some()
    });
    let first = pid_of(&env, "one.txt").unwrap();
    resident_rules_argv(&env, &["--linger", "--changed"], "");
    wait_until("the rules are reloaded", DEADLINE, &|| w.log(), || {
        w.log().contains("rules reloaded")
    });
    // Closing the old step takes 5 s and more (EOF, then SIGTERM it ignores): the
    // watcher said the reload before that, so it did not wait for it.
    assert!(
        !gone(first) && !lines(&env, "exits.jsonl").iter().any(|e| e["pid"] == first),
        "the reload waited for the old step to leave:\n{}",
        w.log()
    );
    // A batch now waits for the old step to leave before a fresh one starts.
    env.write("Data/two.txt", "second save");
    std::fs::write(env.log_dir().join("let-go"), "").unwrap();
    wait_until("two.txt is served", DEADLINE, &|| w.log(), || {
        pid_of(&env, "two.txt").is_some()
    });
    assert_ne!(pid_of(&env, "two.txt"), Some(first));
    assert!(lines(&env, "exits.jsonl").iter().any(|e| e["pid"] == first));
    no_overlap(&env);
}

#[test]
fn issue_19_a_gone_memory_goes_to_the_resident_step_as_a_remove_line() {
    let env = TestEnv::new();
    let step = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/steps/resident.py");
    let argv = serde_json::to_string(&[
        "python3".to_owned(),
        step.display().to_string(),
        env.log_dir().display().to_string(),
    ])
    .unwrap();
    resident_rules(&env, &format!("remove = {argv}"));
    let gone_file = env.data_file("b.txt", "beta");
    env.test()
        .data("a.txt", "alpha")
        .args(&["--once", "--mode", "ingest"])
        .run();
    std::fs::remove_file(&gone_file).unwrap();
    env.test()
        .args(&["--once", "--mode", "ingest"])
        .stdout_has("ingest    ran")
        .run();
    let removes: Vec<Value> = lines(&env, "batches.jsonl")
        .into_iter()
        .filter(|b| !b["remove"].is_null())
        .collect();
    assert_eq!(removes.len(), 1, "{removes:?}");
    assert_eq!(
        removes[0]["remove"],
        serde_json::json!([gone_file.display().to_string()])
    );
    assert_eq!(recorded(&env), ["a.txt"]);
    no_overlap(&env);
}

#[test]
fn issue_19_a_step_that_keeps_dying_is_started_again_after_a_growing_pause() {
    let env = TestEnv::new();
    resident_rules(&env, "");
    env.test()
        .data("a.txt", "CRASH")
        .data("b.txt", "CRASH")
        .data("c.txt", "CRASH")
        .data("d.txt", "delta")
        .args(&["--once", "--mode", "ingest"])
        .status(1)
        .stdout_has("1 done, 3 failed")
        .run();
    let starts: Vec<f64> = lines(&env, "starts.jsonl")
        .iter()
        .map(|s| s["t"].as_f64().unwrap())
        .collect();
    assert_eq!(
        starts.len(),
        4,
        "a fresh process per batch after each death"
    );
    // Deaths in a row: 1 (no pause), 2 (0.5 s), 3 (1 s).
    assert!(starts[2] - starts[1] >= 0.5, "{starts:?}");
    assert!(starts[3] - starts[2] >= 1.0, "{starts:?}");
    assert_eq!(recorded(&env), ["d.txt"]);
}

/// A resident step is judged as a one-shot one is before it starts: a script others can
/// write is refused, named, and never run (issue 21 item 3 holds for resident steps too).
#[test]
fn issue_19_a_resident_step_whose_script_others_can_write_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::new();
    let script = env.home().join("resident.py");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/steps/resident.py"),
        &script,
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o666)).unwrap();
    let argv = serde_json::to_string(&[
        "python3",
        "resident.py",
        &env.log_dir().display().to_string(),
    ])
    .unwrap();
    env.raw_rules(&format!(
        "[actions.ingest]\ncommand = {argv}\nresident = true\nsettle = \"0s\"\n"
    ));
    env.data_file("a.txt", "alpha");
    env.test()
        .args(&["--once", "--mode", "ingest"])
        .status(1)
        .stdout_has("{home}/resident.py: it is writable by others (mode 0666")
        .run();
    assert!(lines(&env, "starts.jsonl").is_empty(), "the script ran");
}
