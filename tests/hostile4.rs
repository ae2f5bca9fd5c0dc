//! Hostile round three, what was left (issues 18 and 21): a helper a killed run's step left
//! behind, an interrupted run's summary, far-future dates and odd names in state files, a
//! symlink swapped during an upload, an unclamped breaker, and wrong or costly messages.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};

use crate::util::*;

/// Kills a process group when dropped, so a failing test leaves nothing running.
struct KillOnDrop(Vec<String>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for target in &self.0 {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", target])
                .status();
        }
    }
}

/// The number a step double wrote into `path`, once it is there.
fn read_pid(path: &Path) -> u32 {
    wait_until(
        &format!("{} is written", path.display()),
        Duration::from_secs(20),
        &String::new,
        || std::fs::read_to_string(path).is_ok_and(|t| t.ends_with('\n')),
    );
    std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Whether `pid` is gone or a zombie (which holds no descriptor).
fn gone(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
        stat.rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z'))
    })
}

// ---- issue 18 item 12: a helper a killed run's step left behind ----

/// A step that, the first time, starts a long-lived helper the way an embedding server is
/// started (double fork, setsid, every descriptor kept), then runs on; later calls only
/// record themselves.
const HELPER_STEP: &str = r#"
import os, sys, time
here = sys.argv[1]
def note(name, pid):
    with open(os.path.join(here, name + ".tmp"), "w") as f:
        f.write(f"{pid}\n")
    os.replace(os.path.join(here, name + ".tmp"), os.path.join(here, name))
first = not os.path.exists(os.path.join(here, "helper.pid"))
with open(os.path.join(here, "calls.txt"), "a") as f:
    f.write(f"{os.getpid()}\n")
if first:
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            note("helper.pid", os.getpid())
            os.execvp("sleep", ["sleep", "300"])
        os._exit(0)
    os.wait()
    note("step.pid", os.getpid())
    time.sleep(60)
"#;

#[test]
fn issue_18_a_helper_left_by_a_killed_runs_step_does_not_keep_the_action_locked() {
    let env = TestEnv::new();
    let steps = env.home().join("steps");
    std::fs::create_dir_all(&steps).unwrap();
    let script = env.write("helper_step.py", HELPER_STEP);
    let argv = json!(["python3", script, steps, "{files}"]);
    env.raw_rules(&format!(
        "[actions.ingest]\ncommand = {argv}\nsettle = \"0s\"\n"
    ));
    env.data_file("a.txt", "alpha");
    let mut first = env
        .command(&["--once", "--mode", "ingest"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let helper = read_pid(&steps.join("helper.pid"));
    let step = read_pid(&steps.join("step.pid"));
    let _cleanup = KillOnDrop(vec![format!("-{step}"), helper.to_string()]);
    first.kill().unwrap();
    first.wait().unwrap();
    // While the step's group runs, the action stays locked (issue 9 item 3).
    env.test()
        .args(&["--once", "--mode", "ingest"])
        .status(3)
        .stdout_has("holds {home}/state/ingest.lock")
        .run();
    // The step's group ends; only the helper it started holds the lock now.
    let _ = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{step}")])
        .status();
    wait_until(
        "the step ends",
        Duration::from_secs(20),
        &String::new,
        || gone(step),
    );
    env.test()
        .args(&["status"])
        .stdout_has(&format!(
            "ingest.lock is held by pid {helper} (sleep 300), which a step of a killed run left \
             behind: the next ingest run sets it aside; `kill {helper}` ends it"
        ))
        .run();
    env.test()
        .args(&["--once", "--mode", "ingest"])
        .stderr_has(&format!(
            "set {{home}}/state/ingest.lock aside: pid {helper} (sleep 300) holds it, left behind by a step of a killed run"
        ))
        .run();
    let calls = std::fs::read_to_string(steps.join("calls.txt")).unwrap();
    assert_eq!(calls.lines().count(), 2, "the step ran again");
    assert!(!gone(helper), "memsched left the helper alone");
    assert!(env.state("ingest.lock").exists());
}

// ---- issue 18 item 15: a run a signal stopped says so ----

/// Runs `--once --mode <mode>`, sends it SIGTERM once the step has started, and returns
/// its summary on stdout and the action's record, after checking it exited 130.
fn stopped_by_sigterm(env: &TestEnv, mode: &str) -> (String, Value) {
    let out = env.home().join("once.out");
    let mut once = env
        .command(&["--once", "--mode", mode])
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(Stdio::null())
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
    let run = env.runs().last().cloned().unwrap();
    let record = action(&run, mode).clone();
    assert_eq!(record["outcome"], "interrupted", "{run:#}");
    (std::fs::read_to_string(&out).unwrap(), record)
}

#[test]
fn issue_18_a_once_stopped_by_sigterm_says_it_was_interrupted_and_what_is_left() {
    let env = TestEnv::new();
    env.rules(&["--sleep", "0.3", "--"], "batch_size = 1\n");
    for i in 0..10 {
        env.data_file(format!("f{i}.txt"), &format!("memory {i}"));
    }
    let (summary, ingest) = stopped_by_sigterm(&env, "ingest");
    let sent = env.calls().len();
    assert!(sent < 10, "the signal stopped nothing");
    let line = format!(
        "stopped by a signal after {sent} of 10 batches: sent {sent} of 10 files: {sent} done, 0 failed; the other {} files are sent next run",
        10 - sent
    );
    assert!(summary.contains("ingest    interrupted"), "{summary}");
    assert!(summary.contains(&line), "{summary}");
    assert!(
        ingest["summary"].as_str().unwrap().contains(&line),
        "{ingest:#}"
    );
    // What was not sent is sent by the next run.
    env.test().args(&["--once", "--mode", "ingest"]).run();
    assert_eq!(env.calls().len(), 10);
}

#[test]
fn issue_18_an_upload_stopped_by_sigterm_says_it_was_interrupted() {
    let env = TestEnv::new();
    let step = env.step_argv_raw(&["--sleep", "0.3", "--", "{path}"]);
    env.raw_rules(&format!("[actions.upload]\ncommand = {step}\n"));
    let entries: Vec<Value> = (0..5)
        .map(|i| {
            env.data_file(format!("u{i}.txt"), "x");
            json!({"path": format!("Data/u{i}.txt"), "status": "pending"})
        })
        .collect();
    env.state_file("upload_log.json", &json!({ "uploads": entries }));
    let (summary, upload) = stopped_by_sigterm(&env, "upload");
    let sent = env.calls().len();
    let line =
        format!("uploaded {sent} of 5 files; stopped by a signal: the rest is sent next run");
    assert!(summary.contains("upload    interrupted"), "{summary}");
    assert!(
        upload["summary"].as_str().unwrap().contains(&line),
        "{upload:#}"
    );
}

// ---- issue 18 item 17: far-future dates, a climbing remote, a pause_file folder ----

#[test]
fn issue_18_a_next_attempt_past_the_time_librarys_range_means_not_yet() {
    let env = TestEnv::new();
    env.retry_rules(&[], "");
    env.state_file(
        "task_queue.json",
        &json!({"tasks": [
            {"id": "max", "step": "s", "status": "failed", "attempts": 1,
             "next_attempt_at": "9999-12-31T23:59:59.999999"},
            {"id": "max-z", "step": "s", "status": "failed", "attempts": 1,
             "next_attempt_at": "9999-12-31T23:59:59Z"},
            {"id": "max-offset", "step": "s", "status": "failed", "attempts": 1,
             "next_attempt_at": "9999-12-31T23:59:59+00:00"},
        ]}),
    );
    env.test().args(&["--once", "--mode", "retry"]).run();
    assert!(env.calls().is_empty(), "a task due in year 9999 ran now");
    // Degraded (failed tasks wait), and each says when: not in this millennium.
    env.test()
        .args(&["status"])
        .status(1)
        .stdout_has(
            "failed max (s), attempt 1 of 5: no error recorded; next retry not before year 9999",
        )
        .stdout_has("none due; the next at 9999-12-31T23:59:59.000Z")
        .run();
}

#[test]
fn issue_18_an_upload_entry_whose_remote_climbs_out_is_refused() {
    for template in ["remote = \"memory/{relpath}\"\n", ""] {
        let env = TestEnv::new();
        let step = env.step_argv_raw(&["--", "{path}", "{remote}"]);
        env.raw_rules(&format!("[actions.upload]\ncommand = {step}\n{template}"));
        env.data_file("a.txt", "secret");
        let entry = json!({"path": "Data/a.txt", "remote": "x/../../evil", "status": "pending"});
        env.state_file("upload_log.json", &json!({ "uploads": [entry] }));
        env.test()
            .args(&["--once", "--mode", "upload"])
            .stdout_has("1 entry refused")
            .run();
        assert!(env.calls().is_empty());
        let entry = &env.state_json("upload_log.json")["uploads"][0];
        assert_eq!(entry["status"], "refused", "{entry}");
        assert!(
            entry["error"].as_str().unwrap().contains("x/../../evil"),
            "{entry}"
        );
    }
}

#[test]
fn issue_18_a_pause_file_that_is_no_plain_file_path_fails_check_naming_the_key() {
    let rules = |value: &str| {
        let env = TestEnv::new();
        let ingest = env.step_argv(&["--"]);
        env.raw_rules(&format!(
            "pause_file = {value:?}\n[actions.ingest]\ncommand = {ingest}\n"
        ));
        env
    };
    for value in ["sub/", "sub//p", "./paused", "sub/./p", "."] {
        rules(value)
            .test()
            .args(&["check"])
            .status(2)
            .stderr_has("watch-rules.toml:1:14: pause_file must name a file inside data_dir")
            .run();
    }
    rules("sub/paused").test().args(&["check"]).run();
}

// ---- issue 21 item 2: the upload step gets the file memsched checked, never a link ----

#[test]
fn issue_21_an_upload_through_a_symlink_passes_the_resolved_checked_path() {
    let env = TestEnv::new();
    env.raw_rules(&format!(
        "[actions.upload]\ncommand = {}\nsources = [\"index/*.json\"]\n",
        env.step_argv_raw(&["--", "{path}", "{remote}"])
    ));
    let real = env.write("index/real/z.json", "{\"good\": true}");
    std::os::unix::fs::symlink("real/z.json", env.home().join("index/link.json")).unwrap();
    // The walk of `sources` passes links by; an entry a script logged names one.
    env.state_file(
        "upload_log.json",
        &json!({"uploads": [{"path": "index/link.json", "status": "pending"}]}),
    );
    let run = env
        .test()
        .args(&["--once", "--mode", "upload", "--json"])
        .run();
    let canonical = std::fs::canonicalize(&real).unwrap();
    let sent = env.sent();
    assert_eq!(sent.len(), 2, "{sent:?}");
    let shown: Vec<String> = sent
        .iter()
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    assert_eq!(
        shown,
        [
            canonical.display().to_string(),
            "index/real/z.json".to_owned()
        ],
        "the step must get the link's checked target, never the link"
    );
    let argv = &run.action("upload")["commands"][0]["argv"];
    assert!(
        argv.as_array()
            .unwrap()
            .iter()
            .any(|a| a == canonical.to_str().unwrap()),
        "--json shows another path than the one passed: {argv}"
    );
}

/// An upload step that records the path it got and, on its first call, swaps the folder
/// `index/sub` for a link to the folder `argv[2]` names.
const SWAPPING_UPLOAD: &str = r#"
import os, sys
home, outside, path = sys.argv[1], sys.argv[2], sys.argv[3]
with open(os.path.join(home, "uploaded.txt"), "a") as f:
    f.write(path + "\n")
sub = os.path.join(home, "index", "sub")
if not os.path.islink(sub):
    os.rename(sub, sub + ".old")
    os.symlink(outside, sub)
"#;

#[test]
fn issue_21_a_folder_swapped_for_a_link_after_the_check_sends_nothing() {
    let env = TestEnv::new();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("b.json"), "secret").unwrap();
    let script = env.write("swap.py", SWAPPING_UPLOAD);
    let argv = json!(["python3", script, env.home(), outside.path(), "{path}"]);
    env.raw_rules(&format!("[actions.upload]\ncommand = {argv}\n"));
    env.write("index/a.json", "{}");
    let b = env.write("index/sub/b.json", "{}");
    let b = std::fs::canonicalize(b).unwrap();
    env.state_file(
        "upload_log.json",
        &json!({"uploads": [
            {"path": "index/a.json", "status": "pending"},
            {"path": "index/sub/b.json", "status": "pending"},
        ]}),
    );
    env.test()
        .args(&["--once", "--mode", "upload"])
        .status(1)
        .stdout_has(&format!(
            "failed index/sub/b.json: not uploaded: {} changed since memsched checked it",
            b.display()
        ))
        .run();
    let uploaded = std::fs::read_to_string(env.home().join("uploaded.txt")).unwrap();
    assert_eq!(uploaded.lines().count(), 1, "{uploaded}");
    assert!(uploaded.ends_with("index/a.json\n"), "{uploaded}");
}

// ---- issue 21 item 6: a breaker's pause is never longer than its cool-down ----

#[test]
fn issue_21_a_breaker_until_far_ahead_is_clamped_to_its_cooldown_and_status_tells_it() {
    let env = TestEnv::new();
    env.retry_rules(&[], "breaker = { failures = 2, cooldown = \"1h\" }\n");
    env.state_file(
        "task_queue.json",
        &json!({"tasks": [{"id": "up-1", "step": "upload", "status": "failed", "attempts": 1}]}),
    );
    // What a forward clock jump leaves: a breaker open until 2099.
    env.state_file(
        "scheduler_log.json",
        &json!({"runs": [{
            "started_at": "2026-11-01T00:00:00.000Z", "finished_at": "2026-11-01T00:00:01.000Z",
            "duration_ms": 1000, "trigger": "manual", "modes": ["retry"], "pid": 1,
            "exit_code": 1,
            "actions": [{"action": "retry", "outcome": "failed", "summary": "breaker",
                         "details": {"breakers": [{"step": "upload", "class": "exit 1",
                                                   "until": "2099-01-01T00:00:00Z"}]}}]
        }]}),
    );
    let status = env.test().args(&["status"]).status(1).run();
    let text = status.stdout();
    assert!(!text.contains("2099"), "{text}");
    let line = "failed up-1 (upload), attempt 1 of 5: no error recorded; next retry once the circuit breaker for upload closes, in";
    assert!(
        [" 59 min\n", " 60 min\n"]
            .iter()
            .any(|left| text.contains(&format!("{line}{left}"))),
        "{text}"
    );
    let run = env
        .test()
        .args(&["--once", "--mode", "retry", "--json"])
        .run();
    let retry = run.action("retry");
    let until = retry["details"]["breakers"][0]["until"].as_str().unwrap();
    let until = humantime::parse_rfc3339(until).unwrap();
    let left = until
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    assert!(
        left <= Duration::from_secs(3600) && left > Duration::from_secs(3000),
        "the pause is not clamped to the cool-down: {retry:#}"
    );
    assert!(
        env.calls().is_empty(),
        "the breaker stays open for its cool-down"
    );
}

// ---- issue 21 item 8: right and bounded messages ----

/// Runs memsched with `args` in a mount namespace of its own whose state folder is a full
/// tmpfs: `None` when this machine makes no such namespace (`unshare -U -r -m`).
fn run_with_a_full_state_folder(env: &TestEnv, args: &[&str]) -> Option<std::process::Output> {
    let usable = std::process::Command::new("unshare")
        .args(["-U", "-r", "-m", "true"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !usable {
        return None;
    }
    let state = env.home().join("state");
    std::fs::create_dir_all(&state).unwrap();
    // A folder of 64 KiB, filled to the last block before memsched starts.
    let script = format!(
        "mount -t tmpfs -o size=64k,mode=0755 tmpfs '{}' && \
         (dd if=/dev/zero of='{}/filler' bs=4k 2>/dev/null; true) && exec \"$0\" \"$@\"",
        state.display(),
        state.display()
    );
    let out = std::process::Command::new("unshare")
        .args(["-U", "-r", "-m", "sh", "-c", &script, BIN, "--paths"])
        .arg(env.home().join("paths.json"))
        .args(args)
        .current_dir(env.home())
        .env("HOME", env.home())
        .env_remove("MEMSCHED_PATHS")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    Some(out)
}

#[test]
fn issue_21_a_full_disk_during_a_journal_append_is_told_as_a_write_failure() {
    let env = TestEnv::new();
    env.rules(&["--"], "");
    env.data_file("a.txt", "alpha");
    let Some(out) = run_with_a_full_state_folder(&env, &["--once", "--mode", "ingest"]) else {
        eprintln!("skipped: no mount namespaces here (unshare -U -r -m fails)");
        return;
    };
    let (stdout, stderr) = (stdout(&out), stderr(&out));
    let journal = env.state("ingest_hash.json.journal");
    let said = format!("no space left on device writing {}", journal.display());
    assert!(
        stdout.contains(&said) || stderr.contains(&said),
        "--- stdout\n{stdout}--- stderr\n{stderr}"
    );
    assert!(
        !stdout.contains("cannot read") && !stderr.contains("cannot read"),
        "--- stdout\n{stdout}--- stderr\n{stderr}"
    );
}

#[test]
fn issue_21_the_watchdogs_failure_summary_never_quotes_its_own_earlier_summary() {
    let env = TestEnv::new();
    env.raw_rules("[actions.watchdog]\ncommand = [\"sh\", \"-c\", \"echo boom >&2; exit 1\"]\n");
    for _ in 0..3 {
        env.test()
            .args(&["--once", "--mode", "watchdog"])
            .status(1)
            .run();
    }
    let run = env.runs().last().cloned().unwrap();
    let summary = action(&run, "watchdog")["summary"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        summary.matches("status degraded").count(),
        1,
        "the summary quotes an earlier one: {summary}"
    );
    assert_eq!(
        summary.matches("the last watchdog run failed").count(),
        1,
        "{summary}"
    );
    assert!(
        summary.ends_with("; the watchdog command failed: exit 1: boom"),
        "{summary}"
    );
    let status = env.test().args(&["status"]).status(1).run();
    assert!(
        status.stdout().contains("the last watchdog run failed at",)
            && status.stdout().matches("status degraded").count() <= 1,
        "{}",
        status.stdout()
    );
}

/// An ingest step that reports its files done in a report padded to `MiB` mebibytes.
const HUGE_REPORT: &str = r#"
import json, os, sys
mib, files = int(sys.argv[1]), sys.argv[2:]
with open(os.environ["MEMSCHED_RESULT"], "w") as f:
    f.write('{"done": ' + json.dumps(files) + ', "pad": "')
    chunk = "x" * (1 << 20)
    for _ in range(mib):
        f.write(chunk)
    f.write('"}')
"#;

#[test]
fn issue_21_a_step_report_past_its_bound_is_unusable_and_never_read_whole() {
    let env = TestEnv::new();
    let script = env.write("huge.py", HUGE_REPORT);
    let huge = json!(["python3", script, "80", "{files}"]);
    env.raw_rules(&format!(
        "[actions.ingest]\ncommand = {huge}\nsettle = \"0s\"\n"
    ));
    env.data_file("a.txt", "alpha");
    env.test()
        .args(&["--once", "--mode", "ingest"])
        .status(1)
        .stdout_has("the ingest step's report (MEMSCHED_RESULT) is larger than 4 MiB plus 8 KiB for each file of its batch (4.0 MiB here): nothing of this batch was recorded")
        .run();
    let recorded = ["ingest_hash.json", "ingest_hash.json.journal"]
        .iter()
        .any(|name| std::fs::read_to_string(env.state(name)).is_ok_and(|t| t.contains("a.txt")));
    assert!(!recorded, "a report past its bound recorded the file");
    // A report within it is read as before.
    let small = json!(["python3", script, "1", "{files}"]);
    env.raw_rules(&format!(
        "[actions.ingest]\ncommand = {small}\nsettle = \"0s\"\n"
    ));
    env.test().args(&["--once", "--mode", "ingest"]).run();
    assert!(
        env.state_json("ingest_hash.json")["files"]
            .get("a.txt")
            .is_some()
    );
}

#[test]
fn issue_21_a_task_id_starting_with_a_dash_never_reaches_the_step() {
    let env = TestEnv::new();
    env.retry_rules(&[], "");
    env.state_file(
        "task_queue.json",
        &json!({"tasks": [
            {"id": "--config=evil.conf", "step": "s", "status": "failed", "attempts": 1},
            {"id": "ok", "step": "s", "status": "failed", "attempts": 1},
        ]}),
    );
    env.test()
        .args(&["--once", "--mode", "retry"])
        .status(1)
        .stdout_has("failed --config=evil.conf: its id \"--config=evil.conf\" starts with '-'")
        .run();
    let given: Vec<String> = env
        .sent()
        .iter()
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    assert_eq!(given, ["ok"], "a dash-led id reached {{task_id}}");
    let queue = env.state_json("task_queue.json");
    let refused = &queue["tasks"][0];
    assert_eq!(refused["status"], "dead", "{queue:#}");
    assert!(
        refused["last_error"]
            .as_str()
            .unwrap()
            .contains("which the retry command would take for an option"),
        "{queue:#}"
    );
}
