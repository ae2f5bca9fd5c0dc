//! Hostile input and hostile neighbours (issue 10, and issue 9 item 3): upload entries
//! confined to the pipeline, links refused where locks and state files live, a step that
//! outlives a killed memsched keeps its lock, every value range-checked, step output
//! bounded, and rewrites faithful to mode and numbers.

use std::fmt::Write as _;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::process::Stdio;
use std::time::Duration;

use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use crate::harness::Test;
use crate::util::*;

fn hex(text: &str) -> String {
    text.bytes().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

fn upload_rules(env: &TestEnv, extra: &str) {
    env.raw_rules(&format!(
        "[actions.upload]\ncommand = {}\nremote = \"drive:{{relpath}}\"\n{extra}\n[actions.watchdog]\n",
        env.step_argv_raw(&["--", "{path}", "{remote}"])
    ));
}

/// Both streams of a run, for messages that may go to either.
fn output(out: &std::process::Output) -> String {
    format!("{}{}", stdout(out), stderr(out))
}

// ---- issue 10 item 1: uploads stay inside the pipeline ----

#[test]
fn issue_10_upload_entries_outside_the_home_or_with_unsafe_remotes_are_refused() {
    let env = TestEnv::new();
    upload_rules(&env, "");
    let fine = env.data_file("fine.txt", "to the cloud");
    env.data_file("opt.txt", "x");
    env.data_file("climb.txt", "x");
    symlink("/etc/passwd", env.data().join("link.txt")).unwrap();
    env.state_file(
        "upload_log.json",
        &json!({"uploads": [
            {"path": "/etc/passwd", "status": "pending"},
            {"path": "../../../../../../../../../etc/passwd", "status": "pending"},
            {"path": format!("\u{0}{}", hex("/etc/group")), "status": "pending"},
            {"path": "\u{0}", "status": "pending"},
            {"path": "Data/link.txt", "status": "pending"},
            {"path": "Data/opt.txt", "remote": "--config=evil.conf", "status": "pending"},
            {"path": "Data/climb.txt", "remote": "drive:memory/../../elsewhere", "status": "failed", "attempts": 1},
            {"path": "Data/fine.txt", "status": "pending"},
        ]}),
    );
    env.test()
        .args(&["--once", "--mode", "upload"])
        .stdout_has("7 entries refused")
        .run();
    assert_eq!(
        env.sent(),
        [bytes(&fine), b"drive:Data/fine.txt".to_vec()],
        "only the file inside the home with a safe remote is uploaded"
    );
    let log = env.state_json("upload_log.json");
    let entries = log["uploads"].as_array().unwrap();
    let reasons = [
        "outside the pipeline home",
        "outside the pipeline home",
        "outside the pipeline home",
        "the path is empty",
        "outside the pipeline home",
        "starts with '-'",
        "'..' component",
    ];
    for (entry, reason) in entries.iter().zip(reasons) {
        assert_eq!(entry["status"], "refused", "{entry}");
        let error = entry["error"].as_str().unwrap();
        assert!(
            error.starts_with("refused: ") && error.contains(reason),
            "{entry}"
        );
    }
    assert_eq!(entries[7]["status"], "uploaded");

    // Refused entries are not tried again, and the watchdog reports them.
    env.test().args(&["--once"]).run();
    assert_eq!(env.calls().len(), 1);
    let health = env.state_json("watchdog_state.json");
    assert_eq!(health["uploads"]["refused"], 7, "{health:#}");
    assert_eq!(health["status"], "degraded");
    assert!(
        health["problems"][0]
            .as_str()
            .unwrap()
            .starts_with("7 upload entries refused"),
        "{health:#}"
    );
}

#[test]
fn issue_10_a_folder_the_rules_allow_may_be_uploaded_from() {
    let env = TestEnv::new();
    let outside = tempfile::tempdir().unwrap();
    let file = outside.path().join("b.txt");
    std::fs::write(&file, "allowed").unwrap();
    upload_rules(
        &env,
        &format!("allow = [{:?}]", outside.path().display().to_string()),
    );
    env.state_file(
        "upload_log.json",
        &json!([{"path": file.display().to_string(), "status": "pending"}]),
    );
    env.test().args(&["--once", "--mode", "upload"]).run();
    assert_eq!(env.sent(), [bytes(&file), b"drive:b.txt".to_vec()]);
    assert_eq!(env.state_json("upload_log.json")[0]["status"], "uploaded");
}

// ---- issue 10 item 2: no links followed where locks and state files live ----

#[test]
fn issue_10_a_link_where_a_lock_should_be_is_refused_and_its_target_untouched() {
    let env = TestEnv::new();
    env.rules(&["--"], "");
    env.data_file("a.txt", "alpha");
    let victim = env.write("victim.txt", "precious\n");
    std::fs::create_dir_all(env.home().join("state")).unwrap();
    symlink(&victim, env.state("ingest.lock")).unwrap();
    let out = env.run(&["--once", "--mode", "ingest"]);
    assert_exit(&out, 1);
    let text = output(&out);
    assert!(
        text.contains(&format!(
            "{} is a symbolic link",
            env.state("ingest.lock").display()
        )),
        "{text}"
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    assert!(env.calls().is_empty());
}

#[test]
fn issue_10_a_link_where_a_state_file_should_be_is_refused_and_its_target_untouched() {
    let env = TestEnv::new();
    upload_rules(&env, "sources = [\"Data/*.txt\"]");
    env.data_file("a.txt", "alpha");
    let victim = env.write("victim.json", "{\"uploads\": []}\n");
    std::fs::create_dir_all(env.home().join("state")).unwrap();
    symlink(&victim, env.state("upload_log.json")).unwrap();
    let out = env.run(&["--once", "--mode", "upload"]);
    assert_exit(&out, 1);
    let text = output(&out);
    assert!(
        text.contains(&format!(
            "{} is a symbolic link",
            env.state("upload_log.json").display()
        )),
        "{text}"
    );
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "{\"uploads\": []}\n"
    );
    assert!(
        std::fs::symlink_metadata(env.state("upload_log.json"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

// ---- issue 9 item 3: a step outliving a killed memsched keeps its lock ----

/// Kills a process group when dropped, so an orphaned step never outlives its test.
struct GroupKiller(Option<u32>);

impl Drop for GroupKiller {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .status();
        }
    }
}

#[test]
fn issue_9_a_step_outliving_a_killed_memsched_keeps_the_action_lock() {
    let env = TestEnv::new();
    env.rules(&["--sleep", "30", "--"], "");
    env.data_file("a.txt", "alpha");
    let mut first = env
        .command(&["--once", "--mode", "ingest"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut orphan = GroupKiller(None);
    wait_until(
        "the step starts",
        Duration::from_secs(20),
        &String::new,
        || env.calls().len() == 1,
    );
    let record = std::fs::read_dir(env.log_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "json"))
        .unwrap();
    let record: Value = serde_json::from_str(&std::fs::read_to_string(record).unwrap()).unwrap();
    let step_pid = u32::try_from(record["pid"].as_u64().unwrap()).unwrap();
    orphan.0 = Some(step_pid);
    first.kill().unwrap();
    first.wait().unwrap();

    env.test()
        .args(&["--once", "--mode", "ingest"])
        .status(3)
        .stdout_has(&format!("holds {}", env.state("ingest.lock").display()))
        .run();
    assert_eq!(env.calls().len(), 1, "the step was started a second time");
}

// ---- issue 10 item 4: every value range-checked ----

#[test]
fn issue_10_out_of_range_values_are_refused_at_load_with_their_place() {
    let ingest = "[actions.ingest]\ncommand = [\"i\", \"{files}\"]\n";
    let retry = "[actions.retry]\ncommand = [\"r\"]\n";
    let cases = [
        ("tick = \"0s\"\n".to_owned(), "1:8", "tick"),
        (
            "debounce = \"500000000000y\"\n".to_owned(),
            "1:12",
            "debounce",
        ),
        ("debounce = \"2h\"\n".to_owned(), "1:12", "debounce"),
        (
            "debounce = \"2s\"\nmax_wait = \"1s\"\n".to_owned(),
            "2:12",
            "max_wait",
        ),
        ("log_keep = 100001\n".to_owned(), "1:12", "log_keep"),
        (
            format!("{ingest}settle = \"10000000y\"\n"),
            "3:10",
            "settle",
        ),
        (
            format!("{ingest}batch_size = 100001\n"),
            "3:14",
            "batch_size",
        ),
        (format!("{ingest}timeout = \"50ms\"\n"), "3:11", "timeout"),
        (format!("{retry}parallel = 65\n"), "3:12", "parallel"),
        (
            format!("{retry}stuck_after = \"0s\"\n"),
            "3:15",
            "stuck_after",
        ),
        (format!("{retry}timeout = \"8d\"\n"), "3:11", "timeout"),
        (
            format!("{retry}[actions.retry.backoff]\nmax = \"500000000000y\"\n"),
            "4:7",
            "max",
        ),
        (
            format!("{retry}[actions.retry.backoff]\ninitial = \"31d\"\n"),
            "4:11",
            "initial",
        ),
    ];
    for (text, place, key) in cases {
        let run = Test::new()
            .raw_rules(&text)
            .args(&["--once"])
            .status(2)
            .stderr_has(&format!("{{home}}/watch-rules.toml:{place}: {key} "))
            .run();
        assert!(!run.stderr().contains("panicked"), "{}", run.stderr());
    }
}

// ---- issue 10 item 5: a step's output is bounded ----

#[test]
fn issue_10_a_step_printing_hundreds_of_megabytes_without_a_newline_stays_within_memory() {
    let env = TestEnv::new();
    let command = serde_json::to_string(&[
        "python3",
        "-c",
        "import sys\nfor _ in range(400): sys.stdout.write('x' * 1000000)\nsys.stdout.flush()",
        "{files}",
    ])
    .unwrap();
    env.raw_rules(&format!(
        "[actions.ingest]\ncommand = {command}\nsettle = \"0s\"\n"
    ));
    env.data_file("a.txt", "alpha");
    // 400 MB of output against a 200 MB data limit: kept whole, it cannot fit.
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -d 200000 && exec \"$@\"")
        .arg("sh")
        .arg(BIN)
        .args(["--paths"])
        .arg(env.home().join("paths.json"))
        .args(["--once", "--mode", "ingest", "--json"])
        .env("HOME", env.home())
        .env("MALLOC_ARENA_MAX", "2")
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let record = run_record(&out);
    let tail = &action(&record, "ingest")["commands"][0]["stdout_tail"];
    let lines = tail.as_array().unwrap();
    assert_eq!(lines.len(), 1, "{tail}");
    assert!(lines[0].as_str().unwrap().len() <= 1000, "{tail}");
}

// ---- issue 10 item 6: rewrites are faithful ----

#[test]
fn issue_10_a_rewrite_keeps_the_mode_and_every_number_as_written() {
    let env = TestEnv::new();
    env.retry_rules(&[], "");
    let queue = env.write(
        "state/task_queue.json",
        r#"{"tasks": [{"id": "t1", "step": "ingest", "status": "failed", "attempts": 1,
            "created_at": "2026-11-01T00:00:00Z", "big": 12345678901234567890123, "sci": 1e2,
            "exact": 0.1000000000000000000001}], "version": 1}"#,
    );
    std::fs::set_permissions(&queue, std::fs::Permissions::from_mode(0o644)).unwrap();
    env.test().args(&["--once", "--mode", "retry"]).run();
    let text = std::fs::read_to_string(&queue).unwrap();
    assert!(text.contains("\"status\": \"done\""), "{text}");
    assert!(text.contains("\"big\": 12345678901234567890123"), "{text}");
    // serde_json writes the exponent with its sign: the same number, still not 100.0.
    assert!(text.contains("\"sci\": 1e+2"), "{text}");
    assert!(
        text.contains("\"exact\": 0.1000000000000000000001"),
        "{text}"
    );
    let mode = std::fs::metadata(&queue).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o644, "the rewrite changed the mode to {mode:o}");
    let log_mode = std::fs::metadata(env.state("scheduler_log.json"))
        .unwrap()
        .permissions()
        .mode()
        & 0o7777;
    assert_eq!(log_mode, 0o600, "a new state file is the user's alone");
}

// ---- issue 10 item 3: StrictModes ----

fn chmod(path: &std::path::Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn chown(path: &std::path::Path, uid: Option<u32>, gid: Option<u32>) {
    nix::unistd::chown(
        path,
        uid.map(nix::unistd::Uid::from_raw),
        gid.map(nix::unistd::Gid::from_raw),
    )
    .unwrap();
}

#[test]
fn issue_10_a_paths_json_others_can_write_is_refused_naming_mode_owner_and_fix() {
    let env = TestEnv::new();
    env.rules(&["--"], "");
    chmod(&env.home().join("paths.json"), 0o666);
    env.test()
        .args(&["--once"])
        .status(2)
        .stderr(
            "memsched: error: {home}/paths.json: it is writable by others (mode 0666, owner root, group root); \
             memsched runs commands named there, so only you may write it\n\
             memsched: hint: chmod go-w {home}/paths.json\n",
        )
        .run();
    assert!(env.calls().is_empty());
}

#[test]
fn issue_10_a_rules_file_owned_by_someone_else_is_refused() {
    let env = TestEnv::new();
    env.rules(&["--"], "");
    let rules = env.home().join("watch-rules.toml");
    chown(&rules, Some(4242), None);
    env.test()
        .args(&["--once"])
        .status(2)
        .stderr_has("watch-rules.toml: it is owned by uid 4242, not by you (root) or root (mode 0644, owner uid 4242, group root)")
        .stderr_has("memsched: hint: chown root {home}/watch-rules.toml")
        .run();
    // `check` refuses it the same way.
    env.test()
        .args(&["check"])
        .status(2)
        .stderr_has("owned by uid 4242")
        .run();
}

#[test]
fn issue_10_a_state_folder_others_can_write_is_refused() {
    let env = TestEnv::new();
    env.rules(&["--"], "");
    std::fs::create_dir_all(env.home().join("state")).unwrap();
    chmod(&env.home().join("state"), 0o777);
    env.test()
        .args(&["--once"])
        .status(2)
        .stderr_has("{home}/state: this folder is writable by others (mode 0777")
        .stderr_has("hint: chmod go-w {home}/state")
        .run();
    // And a pipeline home others can write: they could replace paths.json.
    chmod(&env.home().join("state"), 0o755);
    chmod(env.home(), 0o777);
    env.test()
        .args(&["--once"])
        .status(2)
        .stderr_has(
            "{home}/paths.json: the folder holding it, {home}, is writable by others (mode 0777",
        )
        .stderr_has("hint: chmod go-w {home}\n")
        .run();
    chmod(env.home(), 0o700);
}

#[test]
fn issue_10_group_write_is_fine_for_the_users_private_group_only() {
    let env = TestEnv::new();
    env.rules(&["--"], "");
    env.data_file("a.txt", "alpha");
    let rules = env.home().join("watch-rules.toml");
    // umask 002: group-writable, group root, which is root's private group here.
    chmod(&rules, 0o664);
    env.test().args(&["--once", "--mode", "ingest"]).run();
    assert_eq!(env.calls().len(), 1);
    chown(&rules, None, Some(4243));
    env.test()
        .args(&["--once", "--mode", "ingest"])
        .status(2)
        .stderr_has("it is writable by group gid 4243, which is not your private group (mode 0664, owner root, group gid 4243)")
        .stderr_has("hint: chmod go-w {home}/watch-rules.toml")
        .run();
}

#[test]
fn issue_10_a_tasks_own_command_runs_only_from_a_queue_only_the_user_can_write() {
    let env = TestEnv::new();
    env.retry_rules(&[], "");
    let marker = env.home().join("own-command-ran");
    let queue = env.state_file(
        "task_queue.json",
        &json!({"tasks": [{"id": "t1", "step": "ingest", "status": "failed", "attempts": 1,
            "command": ["touch", marker.to_str().unwrap()]}]}),
    );
    chmod(&queue, 0o666);
    let run = env
        .test()
        .args(&["--once", "--mode", "retry", "--json"])
        .status(1)
        .run();
    assert!(!marker.exists(), "the queue's own command ran");
    assert!(env.calls().is_empty(), "nor the retry command instead");
    let error = run.action("retry")["failed_items"][0]["error"].clone();
    let text = error.as_str().unwrap();
    assert!(
        text.starts_with("its own command was not run: ")
            && text.contains("task_queue.json: it is writable by others (mode 0666")
            && text.ends_with(&format!("(fix: chmod go-w {})", queue.display())),
        "{text}"
    );
    let task = &env.state_json("task_queue.json")["tasks"][0];
    assert_eq!(task["status"], "failed");
    assert_eq!(task["last_error"], error);
    // Once only the user can write it, the command runs.
    chmod(&queue, 0o644);
    let mut q = env.state_json("task_queue.json");
    q["tasks"][0]
        .as_object_mut()
        .unwrap()
        .remove("next_attempt_at");
    env.state_file("task_queue.json", &q);
    env.test().args(&["--once", "--mode", "retry"]).run();
    assert!(marker.exists());
}

#[test]
fn issue_10_a_rules_file_made_writable_by_others_is_not_reloaded() {
    let env = TestEnv::new();
    env.raw_rules(&format!(
        "debounce = \"200ms\"\n[actions.ingest]\ncommand = {}\nsettle = \"0s\"\n\
         [[rules]]\nname = \"memories\"\nin = \"data\"\npaths = [\"**/*.txt\"]\nrun = [\"ingest\"]\n",
        env.step_argv(&["--"])
    ));
    let w = env.watch(&[], &[]);
    let rules = env.home().join("watch-rules.toml");
    chmod(&rules, 0o666);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(w.pid()).unwrap()),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    wait_until(
        "the refused reload is reported",
        Duration::from_secs(20),
        &|| w.log(),
        || w.log().contains("rules not reloaded"),
    );
    assert!(
        w.log()
            .contains("watch-rules.toml: it is writable by others (mode 0666"),
        "{}",
        w.log()
    );
    // The last good rules stay: a new memory is still ingested.
    env.data_file("late.txt", "late");
    wait_until(
        "the watcher still ingests",
        Duration::from_secs(20),
        &|| w.log(),
        || !env.calls().is_empty(),
    );
}
