//! Hostile round three (issues 18 and 21), what reaches a step and what its report may
//! claim: task files outside data_dir, report spellings, names that split a line list,
//! the ingest step run twice at once through retry, tasks for files that are gone.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};

use crate::util::*;

fn task(id: &str, file: &str) -> Value {
    json!({"id": id, "step": "ingest", "status": "failed", "attempts": 1, "file": file,
           "created_at": "2026-11-01T00:00:00Z"})
}

fn tasks(env: &TestEnv) -> Vec<Value> {
    env.state_json("task_queue.json")["tasks"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn task_by_id(env: &TestEnv, id: &str) -> Value {
    tasks(env)
        .into_iter()
        .find(|t| t["id"] == id)
        .unwrap_or_else(|| panic!("no task {id}: {:#}", env.state_json("task_queue.json")))
}

/// The task ids the recording step was run for (from the JSON on its stdin).
fn retried(env: &TestEnv) -> Vec<String> {
    env.calls()
        .iter()
        .map(|c| {
            let task: Value = serde_json::from_slice(&c.stdin).unwrap();
            task["id"].as_str().unwrap().to_owned()
        })
        .collect()
}

// ---- issue 18 item 3: a task's file outside data_dir never reaches a step ----

#[test]
fn issue_18_an_ingest_task_whose_file_leaves_data_dir_is_refused_not_run() {
    let env = TestEnv::new();
    env.retry_rules(&[], "");
    env.data_file("ok.txt", "fine");
    std::os::unix::fs::symlink("/etc", env.data().join("out")).unwrap();
    env.state_file(
        "task_queue.json",
        &json!({"tasks": [
            task("evil", "../../../../../etc/shadow"),
            task("absolute", "/etc/passwd"),
            task("dotdot-inside", "sub/../../x.txt"),
            task("through-a-link", "out/passwd"),
            task("ok", "ok.txt"),
        ]}),
    );
    let out = env.run(&["--once", "--mode", "retry", "--json"]);
    assert_eq!(retried(&env), ["ok"], "{}", stdout(&out));
    for id in ["evil", "absolute", "dotdot-inside", "through-a-link"] {
        let t = task_by_id(&env, id);
        assert_eq!(t["status"], "dead", "{t:#}");
        let error = t["last_error"].as_str().unwrap();
        assert!(error.contains("outside data_dir"), "{t:#}");
        assert!(error.contains("not run"), "{t:#}");
    }
    assert_eq!(task_by_id(&env, "ok")["status"], "done");
    let retry = action(&run_record(&out), "retry").clone();
    let failed = retry["failed_items"].to_string();
    assert!(failed.contains("outside data_dir"), "{retry:#}");
}

/// The example's retry runner is what users copy: it checks the task's file too.
#[test]
fn issue_18_the_example_retry_runner_refuses_a_file_outside_data_dir() {
    let env = TestEnv::new();
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    for name in ["retry_runner.py", "ingest.py"] {
        std::fs::copy(
            manifest.join("examples/pipeline").join(name),
            env.home().join(name),
        )
        .unwrap();
    }
    env.data_file("ok.txt", "fine");
    std::os::unix::fs::symlink("/etc", env.data().join("out")).unwrap();
    let run = |file: &str| {
        let mut child = std::process::Command::new("python3")
            .arg("retry_runner.py")
            .arg("t")
            .current_dir(env.home())
            .env("MEMSCHED_DATA_DIR", env.data())
            .env("MEMSCHED_INDEX_DIR", env.home().join("index"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let task = json!({"id": "t", "step": "ingest", "file": file}).to_string();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), task.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    for file in [
        "../../../../../etc/shadow",
        "/etc/passwd",
        "out/passwd",
        "a/../../x",
    ] {
        let out = run(file);
        assert_eq!(out.status.code(), Some(2), "{file}: {}", stderr(&out));
        assert!(stderr(&out).contains("outside"), "{file}: {}", stderr(&out));
    }
    assert!(
        !env.home().join("index").exists()
            || std::fs::read_dir(env.home().join("index")).unwrap().count() == 0,
        "nothing was indexed"
    );
    let out = run("ok.txt");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

// ---- issue 18 item 5: another spelling of a failed path is still that path ----

/// Runs ingest on Data/x.txt (and Data/sub/, Data/y.txt) with a step that exits 0 and
/// reports `report`; the ingest action's record.
fn ingest_reporting(env: &TestEnv, paths: &Path, report: &str) -> (Option<i32>, Value) {
    env.rules(&["--result", report, "--"], "");
    let out = env
        .bare_command()
        .arg("--paths")
        .arg(paths)
        .args(["--once", "--mode", "ingest", "--json"])
        .output()
        .unwrap();
    (
        out.status.code(),
        action(&run_record(&out), "ingest").clone(),
    )
}

fn recorded(env: &TestEnv, key: &str) -> bool {
    std::fs::read_to_string(env.state("ingest_hash.json"))
        .unwrap_or_default()
        .contains(&format!("\"{key}\""))
}

#[test]
fn issue_18_every_spelling_of_a_failed_batch_file_fails_that_file() {
    let outer = tempfile::tempdir().unwrap();
    for spelling in [
        "./x.txt",
        "Data//x.txt",
        "{H}//Data/x.txt",
        "{H}/Data/x.txt/",
        "{H}/Data/./x.txt",
        "sub/../x.txt",
        "Data/sub/../x.txt",
        "{H}/Data/sub/../x.txt",
        "./Data/x.txt",
        "x.txt/",
        "{REAL}/Data/x.txt",
    ] {
        let env = TestEnv::new();
        env.data_file("x.txt", "ex");
        env.data_file("sub/y.txt", "why");
        // The home is reached through a link; the step may report the real path.
        let link = outer.path().join("home-link");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(env.home(), &link).unwrap();
        let real = env.home().canonicalize().unwrap();
        let path = spelling
            .replace("{H}", link.to_str().unwrap())
            .replace("{REAL}", real.to_str().unwrap());
        let report = json!({"failed": [{"path": path, "error": "refused x"}]}).to_string();
        let (_, ingest) = ingest_reporting(&env, &link.join("paths.json"), &report);
        assert!(
            !recorded(&env, "x.txt"),
            "{spelling}: x.txt recorded done: {ingest:#}"
        );
        let t = task_by_id(&env, "ingest:x.txt");
        assert_eq!(t["status"], "failed", "{spelling}: {t:#}");
        assert_eq!(t["last_error"], "refused x", "{spelling}");
        assert!(recorded(&env, "sub/y.txt"), "{spelling}: {ingest:#}");
    }
}

#[test]
fn issue_18_a_report_entry_naming_no_file_of_its_batch_records_nothing_of_it() {
    let env = TestEnv::new();
    env.data_file("x.txt", "ex");
    env.data_file("y.txt", "why");
    for stray in ["z.txt", "/etc/passwd", "../x.txt", "Data/../../x.txt"] {
        let report = json!({"failed": [{"path": stray, "error": "no"}]}).to_string();
        let (code, ingest) = ingest_reporting(&env, &env.home().join("paths.json"), &report);
        assert_eq!(code, Some(1), "{stray}: {ingest:#}");
        assert!(!recorded(&env, "x.txt"), "{stray}: {ingest:#}");
        assert!(!recorded(&env, "y.txt"), "{stray}: {ingest:#}");
        let text = ingest.to_string();
        assert!(text.contains("no file of its batch"), "{stray}: {ingest:#}");
    }
    // Sent again: the next run with a truthful report records both.
    let (code, _) = ingest_reporting(&env, &env.home().join("paths.json"), "{}");
    assert_eq!(code, Some(0));
    assert!(recorded(&env, "x.txt") && recorded(&env, "y.txt"));
}

// ---- issue 18 item 4: a line break in a name cannot split a line list ----

#[test]
fn issue_18_a_name_with_a_line_break_fails_alone_under_stdin_lines_and_list_file() {
    for pass in ["stdin-lines", "list-file"] {
        let env = TestEnv::new();
        // What the step read: stdin as the recording step keeps it, or the list file's
        // lines as a copy of it made while the file exists.
        let copy = env.home().join("list-copy");
        let command = if pass == "stdin-lines" {
            env.step_argv_raw(&[])
        } else {
            let script = format!("cat \"$0\" >> {}", copy.display());
            serde_json::to_string(&["sh", "-c", &script, "{list}"]).unwrap()
        };
        env.raw_rules(&format!(
            "[actions.ingest]\ncommand = {command}\nsettle = \"0s\"\npass_files = \"{pass}\"\n"
        ));
        env.data_file("x\n/etc/passwd.txt", "trap");
        env.data_file("a.txt", "alpha");
        let out = env.run(&["--once", "--mode", "ingest", "--json"]);
        assert_eq!(out.status.code(), Some(1), "{pass}: {}", stdout(&out));
        let read: Vec<u8> = if pass == "stdin-lines" {
            env.calls().into_iter().flat_map(|c| c.stdin).collect()
        } else {
            std::fs::read(&copy).unwrap_or_default()
        };
        let text = String::from_utf8_lossy(&read).into_owned();
        assert!(!text.contains("passwd"), "{pass}: the step read {text:?}");
        assert!(text.contains("a.txt"), "{pass}: a.txt was sent: {text:?}");
        assert!(recorded(&env, "a.txt"), "{pass}");
        let failed: Vec<Value> = tasks(&env)
            .into_iter()
            .filter(|t| t["status"] == "failed")
            .collect();
        assert_eq!(failed.len(), 1, "{pass}: {failed:#?}");
        let error = failed[0]["last_error"].as_str().unwrap();
        assert!(error.contains("line break"), "{pass}: {error}");
        assert!(error.contains("stdin-nul"), "{pass}: {error}");
    }
}

// ---- issue 21 item 1: a task that runs the ingest step holds ingest.lock ----

#[test]
fn issue_21_parallel_retries_of_ingest_tasks_never_overlap_the_ingest_step() {
    let env = TestEnv::new();
    let exclusive = env.home().join("ingest.running");
    let ex = exclusive.to_str().unwrap();
    let ingest = env.step_argv(&["--exclusive", ex, "--sleep", "0.3", "--"]);
    let retry = env.step_argv_raw(&["--exclusive", ex, "--sleep", "0.3", "--", "{task_id}"]);
    env.raw_rules(&format!(
        "[actions.ingest]\ncommand = {ingest}\nsettle = \"0s\"\n\
         [actions.retry]\ncommand = {retry}\nparallel = 4\n"
    ));
    let own: Value = serde_json::from_str(&env.step_argv_raw(&[
        "--exclusive",
        ex,
        "--sleep",
        "0.3",
        "--",
        "own",
    ]))
    .unwrap();
    let mut list = Vec::new();
    for i in 0..8 {
        let name = format!("f{i}.txt");
        env.data_file(&name, "text");
        let mut t = task(&format!("ingest:{name}"), &name);
        if i % 2 == 0 {
            t["command"] = own.clone();
        }
        list.push(t);
    }
    env.state_file("task_queue.json", &json!({ "tasks": list }));
    let out = env.run(&["--once", "--mode", "retry"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    // The four with a command of their own run it; the four ingest wrote without one go
    // to the ingest step together (issue 19 item 4): one run for their four files.
    assert_eq!(env.calls().len(), 5);
    assert!(tasks(&env).iter().all(|t| t["status"] == "done"));
    assert!(
        !env.home().join("ingest.running.overlap").exists(),
        "the ingest step overlapped itself"
    );
}

#[test]
fn issue_21_an_ingest_run_waits_out_a_retry_of_the_ingest_step() {
    let env = TestEnv::new();
    let exclusive = env.home().join("ingest.running");
    let ex = exclusive.to_str().unwrap();
    let ingest = env.step_argv(&["--exclusive", ex, "--"]);
    env.raw_rules(&format!(
        "[actions.ingest]\ncommand = {ingest}\nsettle = \"0s\"\n\
         [actions.retry]\ncommand = [\"false\"]\n"
    ));
    env.data_file("bad.txt", "bad");
    let own: Value = serde_json::from_str(&env.step_argv_raw(&[
        "--exclusive",
        ex,
        "--sleep",
        "2",
        "--tag",
        "retry",
        "--",
        "bad",
    ]))
    .unwrap();
    let mut t = task("ingest:bad.txt", "bad.txt");
    t["command"] = own;
    env.state_file("task_queue.json", &json!({ "tasks": [t] }));
    let mut retry = env
        .command(&["--once", "--mode", "retry"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until(
        "the retried ingest step starts",
        Duration::from_secs(20),
        &String::new,
        || exclusive.exists(),
    );
    env.data_file("new.txt", "new");
    let out = env.run(&["--once", "--mode", "ingest"]);
    retry.wait().unwrap();
    assert!(
        !env.home().join("ingest.running.overlap").exists(),
        "the ingest step ran twice at once: {}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("ingest.lock"), "{}", stdout(&out));
}

// ---- issue 21 item 5: a task for a file that is gone is closed ----

#[test]
fn issue_21_a_retry_task_for_a_file_that_is_gone_is_closed_not_run() {
    let env = TestEnv::new();
    env.retry_rules(&[], "");
    env.state_file(
        "task_queue.json",
        &json!({"tasks": [task("ingest:gone/away.txt", "gone/away.txt")]}),
    );
    let out = env.run(&["--once", "--mode", "retry"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(
        env.calls().is_empty(),
        "nothing to redo for a file that is gone"
    );
    let t = task_by_id(&env, "ingest:gone/away.txt");
    assert_eq!(t["status"], "done", "{t:#}");
    assert!(t["closed"].as_str().unwrap().contains("is gone"), "{t:#}");
    // A second run has nothing to do, and health is not failing.
    let out = env.run(&["--once", "--mode", "retry"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(env.calls().is_empty());
}

#[test]
fn issue_21_a_file_deleted_while_the_step_fails_on_it_makes_no_task() {
    let env = TestEnv::new();
    env.rules(&["--fail", "doomed", "--sleep", "1", "--"], "");
    let doomed = env.data_file("doomed.txt", "soon gone");
    env.data_file("a.txt", "alpha");
    let run = env
        .command(&["--once", "--mode", "ingest"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until(
        "the step starts",
        Duration::from_secs(20),
        &String::new,
        || !env.calls().is_empty(),
    );
    std::fs::remove_file(&doomed).unwrap();
    let out = run.wait_with_output().unwrap();
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    let open: Vec<Value> = std::fs::read_to_string(env.state("task_queue.json"))
        .ok()
        .map(|_| tasks(&env))
        .unwrap_or_default()
        .into_iter()
        .filter(|t| t["status"] != "done")
        .collect();
    assert!(open.is_empty(), "{open:#?}\n{shown}");
    assert!(shown.contains("gone"), "{shown}");
    assert!(recorded(&env, "a.txt"));
}
