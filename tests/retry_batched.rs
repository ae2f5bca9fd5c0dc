//! Failed ingest files retried together (issue 19 item 4): the ingest tasks due together
//! go to the ingest step in one run (as `[actions.ingest]` passes files, or one resident
//! batch), each file's result on its own task.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::util::*;

/// How many files fail together, as in the issue's measurement.
const FILES: usize = 40;

fn name(i: usize) -> String {
    format!("f{i:02}.txt")
}

/// `[actions.retry]` with a recording command tagged `retry-command` (memsched's own
/// ingest tasks must not need it) and `extra`.
fn retry_table(env: &TestEnv, extra: &str) -> String {
    let command = env.step_argv_raw(&["--tag", "retry-command", "--", "{task_id}"]);
    format!("[actions.retry]\ncommand = {command}\n{extra}\n")
}

/// The tasks of task_queue.json, by id.
fn tasks(env: &TestEnv) -> std::collections::BTreeMap<String, Value> {
    let queue = env.state_json("task_queue.json");
    queue["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["id"].as_str().unwrap().to_owned(), t.clone()))
        .collect()
}

/// A home whose ingest step (the recording double, files in argv, `step` its arguments
/// before `--`) failed on all [`FILES`] files in one first run, while `flag` existed.
fn failed_by_a_first_run(env: &TestEnv, step: &[&str], flag: &Path) {
    for i in 0..FILES {
        env.data_file(name(i), "text");
    }
    let mut step_args = vec!["--fail-while", flag.to_str().unwrap()];
    step_args.extend_from_slice(step);
    step_args.push("--");
    let argv = env.step_argv(&step_args);
    let retry = retry_table(env, "backoff = { initial = \"0s\" }");
    env.raw_rules(&format!(
        "[actions.ingest]\ncommand = {argv}\nsettle = \"0s\"\n{retry}"
    ));
    std::fs::write(flag, "").unwrap();
    let out = env.run(&["--once", "--mode", "ingest"]);
    assert_exit(&out, 1);
    assert_eq!(env.calls().len(), 1, "one batch of {FILES} files first");
    let tasks = tasks(env);
    assert_eq!(tasks.len(), FILES, "{tasks:?}");
    assert!(tasks.values().all(|t| t["status"] == "failed"), "{tasks:?}");
    std::fs::remove_file(flag).unwrap();
}

#[test]
fn issue_19_forty_failed_ingest_files_are_retried_in_one_run_of_the_step() {
    let env = TestEnv::new();
    let flag = env.home().join("failing");
    failed_by_a_first_run(&env, &[], &flag);
    let before = env.calls().len();
    let run = env
        .test()
        .args(&["--once", "--mode", "retry", "--json"])
        .run();
    let calls = env.calls();
    let retried = &calls[before..];
    assert!(
        retried.len() <= 2,
        "{} runs of the step for {FILES} failed files",
        retried.len()
    );
    assert!(
        retried.iter().all(|c| c.tag.is_none()),
        "the ingest step ran, not the retry command"
    );
    let mut sent: Vec<Vec<u8>> = retried.iter().flat_map(|c| c.args.clone()).collect();
    sent.sort();
    let want: Vec<Vec<u8>> = (0..FILES)
        .map(|i| {
            env.data()
                .join(name(i))
                .into_os_string()
                .into_encoded_bytes()
        })
        .collect();
    assert_eq!(sent, want, "every file once, as ingest passes them");
    assert!(
        retried.iter().all(|c| c.env["MEMSCHED_RESULT"].is_string()),
        "each run may report per file"
    );
    assert!(
        retried.iter().all(|c| c.env["MEMSCHED_ACTION"] == "retry"),
        "the step is told who runs it"
    );
    assert_eq!(run.action("retry")["counts"]["done"], FILES);
    for (id, t) in tasks(&env) {
        assert_eq!(t["status"], "done", "{id}: {t}");
        assert_eq!(t["attempts"], 1, "{id}: {t}");
    }
}

#[test]
fn issue_19_a_file_the_retried_batch_fails_is_failed_on_its_own_task_and_the_rest_are_done() {
    let env = TestEnv::new();
    let flag = env.home().join("failing");
    failed_by_a_first_run(&env, &["--fail", "f07"], &flag);
    // A backoff worth seeing: the one file failed again waits for it.
    let rules = std::fs::read_to_string(env.home().join("watch-rules.toml")).unwrap();
    env.raw_rules(&rules.replace(
        "backoff = { initial = \"0s\" }",
        "backoff = { initial = \"10m\", jitter = 0.0 }",
    ));
    let before = env.calls().len();
    let started = std::time::SystemTime::now();
    let run = env
        .test()
        .args(&["--once", "--mode", "retry", "--json"])
        .status(1)
        .run();
    assert_eq!(env.calls().len() - before, 1, "one run of the step");
    let retry = run.action("retry");
    assert_eq!(retry["counts"]["done"], FILES - 1);
    assert_eq!(retry["counts"]["failed_again"], 1);
    for (id, t) in tasks(&env) {
        if id == "ingest:f07.txt" {
            assert_eq!(t["status"], "failed", "{t}");
            assert_eq!(t["attempts"], 2, "{t}");
            assert_eq!(t["last_error"], "refused f07.txt", "{t}");
            let next = memsched::state::parse_time(t["next_attempt_at"].as_str().unwrap()).unwrap();
            let wait = next.duration_since(started).unwrap();
            assert!(
                wait > Duration::from_secs(1190) && wait < Duration::from_secs(1220),
                "waits its backoff after a second failure (10m, doubled): {wait:?}"
            );
        } else {
            assert_eq!(t["status"], "done", "{id}: {t}");
        }
    }
}

#[test]
fn issue_19_files_on_stdin_are_retried_together_as_ingest_passes_them() {
    let env = TestEnv::new();
    // Tasks as ingest writes them when files go on stdin: no command of their own.
    let mut queue = Vec::new();
    for i in 0..FILES {
        env.data_file(name(i), "text");
        queue.push(json!({
            "id": format!("ingest:{}", name(i)), "step": "ingest", "status": "failed",
            "attempts": 1, "priority": "normal", "file": name(i),
            "created_at": "2026-11-01T00:00:00Z", "next_attempt_at": "2026-11-01T00:00:00Z",
            "last_error": "timed out after 1000 ms",
        }));
    }
    env.state_file("task_queue.json", &json!({ "tasks": queue }));
    let argv = env.step_argv_raw(&[]);
    let retry = retry_table(&env, "");
    env.raw_rules(&format!(
        "[actions.ingest]\ncommand = {argv}\npass_files = \"stdin-nul\"\nbatch_size = 25\n{retry}"
    ));
    env.test().args(&["--once", "--mode", "retry"]).run();
    let calls = env.calls();
    assert_eq!(calls.len(), 2, "{FILES} files, 25 a batch: two runs");
    let mut sent: Vec<Vec<u8>> = calls
        .iter()
        .flat_map(|c| {
            assert!(c.tag.is_none(), "the ingest step ran");
            c.stdin
                .split(|b| *b == 0)
                .filter(|n| !n.is_empty())
                .map(<[u8]>::to_vec)
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(
        calls[0].stdin.split(|b| *b == 0).count() - 1,
        25,
        "batch_size holds"
    );
    sent.sort();
    assert_eq!(sent.len(), FILES);
    assert!(tasks(&env).values().all(|t| t["status"] == "done"));
}

#[test]
fn issue_19_with_a_resident_step_the_retried_files_go_as_one_batch() {
    let env = TestEnv::new();
    for i in 0..FILES {
        env.data_file(name(i), "FAIL");
    }
    let step = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/steps/resident.py");
    let argv = serde_json::to_string(&[
        "python3",
        step.to_str().unwrap(),
        env.log_dir().to_str().unwrap(),
    ])
    .unwrap();
    let retry = retry_table(&env, "backoff = { initial = \"0s\" }");
    env.raw_rules(&format!(
        "[actions.ingest]\ncommand = {argv}\nresident = true\nsettle = \"0s\"\n{retry}"
    ));
    let out = env.run(&["--once", "--mode", "ingest"]);
    assert_exit(&out, 1);
    assert_eq!(tasks(&env).len(), FILES);
    // All but one are fine now.
    for i in 0..FILES {
        let text = if i == 5 { "FAIL" } else { "ok" };
        env.data_file(name(i), text);
    }
    let read = |file: &str| -> Vec<Value> {
        std::fs::read_to_string(env.log_dir().join(file))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    // And a new memory, for the ingest that runs after retry in the same run.
    env.data_file("new.txt", "ok");
    let (batches, starts) = (read("batches.jsonl").len(), read("starts.jsonl").len());
    env.test()
        .args(&["--once", "--mode", "retry,ingest"])
        .status(1)
        .run();
    let new_batches = &read("batches.jsonl")[batches..];
    assert_eq!(
        new_batches.len(),
        2,
        "one resident batch each: {new_batches:?}"
    );
    assert_eq!(new_batches[0]["files"].as_array().unwrap().len(), FILES);
    // (With the files retried since changed from the content their tasks were made for,
    // ingest sends them again too.)
    assert!(new_batches[1]["files"].to_string().contains("new.txt"));
    assert_eq!(
        new_batches[0]["pid"], new_batches[1]["pid"],
        "the retry kept the step loaded for ingest"
    );
    assert_eq!(read("starts.jsonl").len() - starts, 1, "one process");
    assert!(env.calls().is_empty(), "no retry command ran");
    assert!(!env.log_dir().join("OVERLAP").exists());
    for (id, t) in tasks(&env) {
        let want = if id == "ingest:f05.txt" {
            "failed"
        } else {
            "done"
        };
        assert_eq!(t["status"], want, "{id}: {t}");
    }
}

// ---- issue 19 item 4: the first retry of an ingest failure waits backoff.initial ----

#[test]
fn issue_19_a_file_ingest_fails_on_waits_backoff_initial_before_its_first_retry() {
    let env = TestEnv::new();
    env.data_file("bad.txt", "not UTF-8, say");
    let argv = env.step_argv(&["--exit", "1", "--"]);
    let retry = retry_table(&env, "backoff = { initial = \"10m\" }");
    env.raw_rules(&format!(
        "[actions.ingest]\ncommand = {argv}\nsettle = \"0s\"\n{retry}"
    ));
    let before = std::time::SystemTime::now();
    let out = env.run(&["--once", "--mode", "ingest"]);
    assert_exit(&out, 1);
    let after = std::time::SystemTime::now();
    let task = tasks(&env)["ingest:bad.txt"].clone();
    let next = memsched::state::parse_time(task["next_attempt_at"].as_str().unwrap()).unwrap();
    // 10 minutes, spread by the default jitter (±20%).
    let (least, most) = (Duration::from_secs(480), Duration::from_secs(720));
    assert!(
        next >= before + least && next <= after + most,
        "next_attempt_at {:?} s after the run, want 480 to 720: {task}",
        next.duration_since(before).unwrap_or_default()
    );
    let calls = env.calls().len();
    let run = env
        .test()
        .args(&["--once", "--mode", "retry", "--json"])
        .run();
    assert_eq!(env.calls().len(), calls, "nothing ran before its backoff");
    assert_eq!(run.action("retry")["outcome"], "nothing-to-do");
    let task = tasks(&env)["ingest:bad.txt"].clone();
    assert_eq!(task["attempts"], 1, "no attempt spent: {task}");
    assert_eq!(task["status"], "failed", "{task}");
}

// ---- issue 19: a retry run a signal stopped says so, as ingest and upload do ----

#[test]
fn issue_19_a_retry_stopped_by_sigterm_says_it_was_interrupted_and_what_is_left() {
    let env = TestEnv::new();
    env.retry_rules(&["--sleep", "0.3"], "");
    let list: Vec<Value> = (0..8)
        .map(|i| {
            json!({"id": format!("t{i}"), "step": "other", "status": "failed", "attempts": 1,
                   "created_at": "2026-11-01T00:00:00Z"})
        })
        .collect();
    env.state_file("task_queue.json", &json!({ "tasks": list }));
    let out = env.home().join("once.out");
    let mut once = env
        .command(&["--once", "--mode", "retry"])
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until(
        "the step starts",
        Duration::from_secs(20),
        &String::new,
        || !env.calls().is_empty(),
    );
    let pid = nix::unistd::Pid::from_raw(i32::try_from(once.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    assert_eq!(once.wait().unwrap().code(), Some(130));
    let ran = env.calls().len();
    assert!(ran < 8, "the signal stopped nothing");
    let run = env.runs().last().cloned().unwrap();
    let retry = action(&run, "retry").clone();
    assert_eq!(retry["outcome"], "interrupted", "{run:#}");
    let line = match 8 - ran {
        1 => "stopped by a signal: the other 1 due task runs next run".to_owned(),
        left => format!("stopped by a signal: the other {left} due tasks run next run"),
    };
    assert!(
        retry["summary"].as_str().unwrap().contains(&line),
        "{retry:#}"
    );
    let summary = std::fs::read_to_string(&out).unwrap();
    assert!(summary.contains("retry     interrupted"), "{summary}");
    // The rest run next time; none ran twice.
    env.test().args(&["--once", "--mode", "retry"]).run();
    assert_eq!(env.calls().len(), 8);
    let queue = env.state_json("task_queue.json");
    assert!(
        queue["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["status"] == "done"),
        "{queue:#}"
    );
}
