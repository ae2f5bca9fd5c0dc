//! The promise that no memory is lost (issue 9): each case from a week of ordinary
//! accidents, through the real binary. Regression tests are named after the issue.

use pretty_assertions::assert_eq;
use serde_json::json;

use crate::harness::Test;
use crate::no_loss_watcher::watcher_rules;
use crate::util::*;

/// Issue 9, case 1: a copy is a new path, and an index keyed by path must be given it, or
/// the copy's text is lost once the original changes.
#[test]
fn issue_9_a_copied_memory_is_sent_under_its_own_name() {
    let run = Test::new()
        .rules(&["--"], "")
        .data("home.txt", "Wifi password is hunter2.")
        .args(&["--once"])
        .run();
    let env = run.env();
    let backup = env.data_file("home-backup.txt", "Wifi password is hunter2.");
    let ingest = env
        .test()
        .args(&["--once", "--json"])
        .run()
        .action("ingest");
    assert_eq!(env.calls()[1].args, [bytes(&backup)], "{ingest:#}");
    assert_eq!(ingest["counts"]["known_content"], 0, "{ingest:#}");
}

/// Issue 9, case 1: renaming a note and writing a new one under the old name sends both.
#[test]
fn issue_9_a_renamed_memory_is_sent_under_its_new_name() {
    let run = Test::new()
        .rules(&["--"], "")
        .data("note.txt", "the old note")
        .args(&["--once"])
        .run();
    let env = run.env();
    std::fs::rename(env.data().join("note.txt"), env.data().join("renamed.txt")).unwrap();
    let new = env.data_file("note.txt", "a new note");
    env.test().args(&["--once"]).run();
    let mut sent = env.calls()[1].args.clone();
    sent.sort();
    assert_eq!(sent, [bytes(&new), bytes(&env.data().join("renamed.txt"))]);
}

/// Issue 9, case 1: skipping known content stays available, as an explicit opt-in.
#[test]
fn issue_9_skipping_known_content_is_an_opt_in() {
    let run = Test::new()
        .rules(&["--"], "skip_known_content = true\n")
        .data("home.txt", "same text")
        .args(&["--once"])
        .run();
    let env = run.env();
    env.data_file("copy.txt", "same text");
    let ingest = env
        .test()
        .args(&["--once", "--json"])
        .run()
        .action("ingest");
    assert_eq!(env.calls().len(), 1, "the copy is recorded, not sent");
    assert_eq!(ingest["counts"]["known_content"], 1, "{ingest:#}");
}

/// Issue 9, case 2: `Data/x.txt` spells both Data/x.txt (from the home) and the key of
/// Data/Data/x.txt. A report that uses it cannot say which file failed: the batch is
/// recorded as nothing and sent again, with the reason.
#[test]
fn issue_9_an_ambiguous_reported_path_records_nothing_of_the_batch() {
    let result = json!({"failed": [{"path": "Data/x.txt", "error": "bad"}]}).to_string();
    let run = Test::new()
        .rules(&["--result", &result, "--"], "")
        .data("x.txt", "outer")
        .data("Data/x.txt", "inner")
        .args(&["--once", "--mode", "ingest"])
        .status(1)
        .stdout_has("could be")
        .run();
    let env = run.env();
    let hashes = std::fs::read_to_string(env.state("ingest_hash.json")).unwrap_or_default();
    assert!(!hashes.contains("x.txt"), "nothing recorded: {hashes}");
    assert!(!env.state("task_queue.json").exists(), "no task made");
    // With a report that names files exactly, both are recorded.
    env.rules(&["--"], "");
    env.test().args(&["--once", "--mode", "ingest"]).run();
    let files = env.state_json("ingest_hash.json")["files"].clone();
    assert!(files.get("x.txt").is_some() && files.get("Data/x.txt").is_some());
}

/// Issue 9, case 4: a date before 1970 (Python's `datetime.min`, a task updated in 1960)
/// is read and written like any other; the run goes on to every action.
#[test]
fn issue_9_dates_before_1970_do_not_crash_a_run() {
    let run = Test::new()
        .retry_rules(&[], "")
        .state_file(
            "task_queue.json",
            &json!({"tasks": [
                {"id": "old", "step": "x", "status": "failed", "created_at": "0001-01-01T00:00:00"},
                {"id": "sixties", "step": "x", "status": "running", "updated_at": "1960-01-01T00:00:00"}
            ]}),
        )
        .args(&["--once", "--json"])
        .run();
    let retry = run.action("retry");
    assert_eq!(retry["counts"]["done"], 1, "{retry:#}");
    assert_eq!(retry["counts"]["stuck"], 1, "{retry:#}");
    let env = run.env();
    assert_eq!(env.runs().len(), 1, "the run is logged");
    let tasks = env.state_json("task_queue.json")["tasks"].clone();
    assert_eq!(
        tasks[0]["created_at"], "0001-01-01T00:00:00",
        "kept as written"
    );
    assert_eq!(tasks[1]["status"], "failed");
}

/// Issue 9, case 10: a retry whose step fails exits 1, as ingest does: a step that failed
/// on anything in the run fails the run, whichever action ran it.
#[test]
fn issue_9_a_failing_retry_step_fails_the_run() {
    let run = Test::new()
        .retry_rules(&["--exit", "3"], "")
        .state_file(
            "task_queue.json",
            &json!({"tasks": [{"id": "t", "step": "x", "status": "failed"}]}),
        )
        .args(&["--once", "--mode", "retry"])
        .status(1)
        .run();
    let tasks = run.env().state_json("task_queue.json")["tasks"].clone();
    assert_eq!(tasks[0]["status"], "failed");
    assert_eq!(tasks[0]["attempts"], 1);
}

/// Issue 9, case 10: a data_dir that is a regular file is an error naming it, not
/// "0 files, all ingested".
#[test]
fn issue_9_a_data_dir_that_is_a_file_fails_ingest() {
    let env = TestEnv::new();
    env.rules(&["--"], "");
    std::fs::remove_dir(env.data()).unwrap();
    env.write("Data", "not a folder");
    env.test()
        .args(&["--once", "--mode", "ingest"])
        .status(1)
        .stdout_has("not a folder")
        .run();
    assert!(env.calls().is_empty());
}

/// Issue 9, case 9: a `pending` task is one no one has tried yet; retry runs it.
#[test]
fn issue_9_a_pending_task_is_run() {
    let run = Test::new()
        .retry_rules(&[], "")
        .state_file(
            "task_queue.json",
            &json!({"tasks": [{"id": "p", "step": "x", "status": "pending"}]}),
        )
        .args(&["--once", "--mode", "retry"])
        .run();
    assert_eq!(run.env().calls()[0].args, [b"p".to_vec()]);
    assert_eq!(
        run.env().state_json("task_queue.json")["tasks"][0]["status"],
        "done"
    );
}

/// Issue 9, case 9: two tasks with one id, and a task with no id, cannot be acted on
/// safely: none runs, each run says why, and the watchdog reports them.
#[test]
fn issue_9_tasks_with_a_shared_or_missing_id_are_reported_not_run() {
    let env = TestEnv::new();
    let retry = env.step_argv_raw(&["--", "{task_id}"]);
    env.raw_rules(&format!(
        "[actions.retry]\ncommand = {retry}\n[actions.watchdog]\n"
    ));
    env.state_file(
        "task_queue.json",
        &json!({"tasks": [
            {"id": "twin", "step": "x", "status": "done"},
            {"id": "twin", "step": "x", "status": "failed"},
            {"step": "x", "status": "failed"}
        ]}),
    );
    let record = env.test().args(&["--once", "--json"]).run().record();
    assert!(env.calls().is_empty(), "no task ran");
    let reasons = record["actions"][0]["reasons"].to_string();
    assert!(
        reasons.contains("task id \\\"twin\\\" is used by 2 tasks"),
        "{reasons}"
    );
    assert!(reasons.contains("task #3 has no id"), "{reasons}");
    assert!(
        !record["actions"][0]["summary"]
            .as_str()
            .unwrap()
            .contains("changed by another writer"),
        "{record:#}"
    );
    let health = env.state_json("watchdog_state.json");
    assert_eq!(health["status"], "degraded", "{health:#}");
    assert!(
        health["problems"]
            .to_string()
            .contains("is used by 2 tasks")
    );
}

/// Issue 9, case 4: should an action ever panic, the run is still recorded with that
/// action failed, the other actions run, and `--once` exits 1 rather than 101.
#[test]
fn issue_9_a_panicking_action_fails_alone_and_the_run_is_recorded() {
    let run = Test::new()
        .rules(&["--"], "")
        .data("a.txt", "alpha")
        .env("MEMSCHED_TEST_PANIC", "ingest")
        .args(&["--once", "--json"])
        .status(1)
        .run();
    let ingest = run.action("ingest");
    assert_eq!(ingest["outcome"], "failed");
    assert!(ingest["summary"].as_str().unwrap().contains("panicked"));
    assert_eq!(run.env().runs().len(), 1, "the run is logged");
}

/// Issue 9, case 10: a writer killed between creating its temporary file and renaming it
/// leaves `.memsched-<pid>-….tmp` behind; the next run removes those of dead processes
/// and leaves a live process's alone.
#[test]
fn issue_9_temporary_files_of_dead_writers_are_swept() {
    let env = TestEnv::new();
    env.rules(&["--"], "");
    let dead = env.write("state/.memsched-999999999-0-00000000.tmp", "{\"half");
    let live = env.write(
        &format!("state/.memsched-{}-0-00000000.tmp", std::process::id()),
        "{\"in use",
    );
    let unrelated = env.write("state/.memsched-notes.tmp", "not a temporary file");
    let out = env.run(&["--once"]);
    assert_exit(&out, 0);
    assert!(!dead.exists(), "a dead writer's temporary file stays");
    assert!(live.exists(), "a live writer's temporary file was removed");
    assert!(unrelated.exists());
}

/// Runs memsched in `env` as the unprivileged user `nobody` (root reads everything, so
/// what a user cannot read needs a user): the home is handed to that user first.
fn as_nobody(env: &TestEnv, args: &[&str]) -> std::process::Output {
    fn chown_tree(path: &std::path::Path) {
        let nobody = Some(nix::unistd::Uid::from_raw(65534));
        let group = Some(nix::unistd::Gid::from_raw(65534));
        nix::unistd::fchownat(
            None,
            path,
            nobody,
            group,
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .unwrap();
        if path.is_dir() && !path.is_symlink() {
            for entry in std::fs::read_dir(path).unwrap() {
                chown_tree(&entry.unwrap().path());
            }
        }
    }
    chown_tree(env.home());
    std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN])
        .arg("--paths")
        .arg(env.home().join("paths.json"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

/// Issue 9, case 8: a folder in data_dir memsched cannot read, and a state folder it
/// cannot write, make health degraded, naming them, instead of "ok".
#[test]
fn issue_9_what_memsched_cannot_read_or_write_makes_health_degraded() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::new();
    env.rules(&["--"], "");
    env.data_file("ok.txt", "readable");
    env.data_file("private/secret.txt", "behind a locked door");
    std::fs::create_dir_all(env.state("")).unwrap();
    let _ = as_nobody(&env, &["--once"]);
    std::fs::set_permissions(
        env.data().join("private"),
        std::fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    let out = as_nobody(&env, &["status", "--json"]);
    let health: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(health["status"], "degraded", "{health:#}");
    assert!(
        health["problems"].to_string().contains("private"),
        "the unreadable folder is not named: {health:#}"
    );
    std::fs::set_permissions(env.state(""), std::fs::Permissions::from_mode(0o555)).unwrap();
    let out = as_nobody(&env, &["status", "--json"]);
    let health: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        health["problems"].to_string().contains("not writable"),
        "a read-only state folder is not named: {health:#}"
    );
}

/// Issue 9, case 11: `pause_file = ""` named data_dir itself and paused the watcher for
/// ever; it and any name outside data_dir are refused where they are written.
#[test]
fn issue_9_a_pause_file_outside_data_dir_is_refused() {
    for bad in ["", "../elsewhere", "/tmp/pause", "."] {
        let env = TestEnv::new();
        let step = env.step_argv(&["--"]);
        env.raw_rules(&format!(
            "pause_file = {bad:?}\n[actions.ingest]\ncommand = {step}\n"
        ));
        let out = env.run(&["check"]);
        assert_exit(&out, 2);
        assert!(
            stderr(&out).contains("watch-rules.toml:")
                && stderr(&out).contains("pause_file must name a file inside data_dir"),
            "{bad:?}: {}",
            stderr(&out)
        );
    }
}

/// Issue 9, case 5: a step that leaves a background process holding its output open
/// (`sleep & exit 0`) cost the watcher a thread and two descriptors per run, two seconds
/// of waiting, and the run's output tail. Threads and descriptors stay flat now, and the
/// tail is kept.
#[test]
fn issue_9_a_step_leaving_a_background_process_leaks_nothing() {
    let env = TestEnv::new();
    let step = r#"["sh", "-c", "sleep 30 & echo ingested \"$#\"; exit 0", "sh", "{files}"]"#;
    watcher_rules(&env, "debounce = \"20ms\"\ntick = \"1h\"", step);
    let w = env.watch(&[], &[]);
    let count = |what: &str| {
        std::fs::read_dir(format!("/proc/{}/{what}", w.pid()))
            .unwrap()
            .count()
    };
    let event_runs = || {
        env.runs()
            .iter()
            .filter(|r| r["trigger"] == "event")
            .count()
    };
    let run_once = |i: usize| {
        env.write(&format!("Data/m{i}.txt"), &format!("memory {i}"));
        wait_until(
            "the run is recorded",
            std::time::Duration::from_secs(20),
            &|| w.log(),
            || event_runs() > i,
        );
    };
    run_once(0);
    let (threads, fds) = (count("task"), count("fd"));
    for i in 1..10 {
        run_once(i);
    }
    // The loop hears each run finish just after it is recorded.
    wait_until(
        "the threads settle",
        std::time::Duration::from_secs(10),
        &|| w.log(),
        || count("task") <= threads + 1 && count("fd") <= fds + 1,
    );
    let last = env.runs().pop().unwrap();
    assert_eq!(
        last["actions"][0]["commands"][0]["stdout_tail"][0], "ingested 1",
        "the output tail was lost: {last:#}"
    );
}
