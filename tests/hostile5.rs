//! Hostile round three, part two (issue 21 items 3, 4, 7 and 9), through the real binary:
//! a file dated in the future, `parallel` with slow steps, programs others can write, and
//! a mount made under data_dir while watching.

use std::path::Path;
use std::time::{Duration, SystemTime};

use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use crate::retry::task;
use crate::util::*;

// ---- item 4: an mtime ahead of the clock is not "being written" ----

/// Sets a file's mtime to 2099-01-01, as `touch -d 2099-01-01` would.
fn date_in_2099(path: &Path) {
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(4_070_908_800))
        .unwrap();
}

#[test]
fn issue_21_a_file_dated_in_the_future_is_ingested_at_once_saying_so() {
    let env = TestEnv::new();
    env.rules(&["--"], "settle = \"2s\"\n");
    let file = env.data_file("f.txt", "from a camera whose clock is wrong");
    date_in_2099(&file);
    let run = env.test().args(&["--once", "--json"]).run();
    assert_eq!(env.sent(), vec![bytes(&file)], "the file reaches the step");
    let ingest = run.action("ingest");
    let reasons: Vec<&str> = ingest["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("f.txt") && r.contains("mtime is in the future")),
        "{ingest:#}"
    );
    assert!(
        ingest["details"]["next_due"].is_null(),
        "no timer: {ingest:#}"
    );
    env.test()
        .args(&["status"])
        .stdout_has("data       1 file, 0 not yet indexed")
        .run();
}

#[test]
fn issue_21_a_file_dated_in_the_future_is_ingested_by_the_watcher_which_then_stays_idle() {
    let env = TestEnv::new();
    let ingest = env.step_argv(&["--"]);
    env.raw_rules(&format!(
        "debounce = \"50ms\"\ntick = \"1h\"\n\
         [actions.ingest]\ncommand = {ingest}\nsettle = \"1s\"\n\
         [[rules]]\nname = \"memories\"\nin = \"data\"\npaths = [\"**/*.txt\"]\nrun = [\"ingest\"]\n"
    ));
    let future = env.data_file("f.txt", "dated 2099 by tar");
    date_in_2099(&future);
    let w = env.watch(&[], &[]);
    assert_eq!(env.sent(), vec![bytes(&future)], "the startup run sends it");
    let ingested = env.runs().len();
    // An idle spell three settle windows long: a timer repeating every `settle` would
    // have run at least twice in it.
    let quiet_until = SystemTime::now() + Duration::from_secs(3);
    wait_until(
        "three settle windows pass",
        Duration::from_secs(10),
        &|| w.log(),
        || SystemTime::now() > quiet_until,
    );
    let normal = env.data_file("g.txt", "an ordinary memory");
    wait_until(
        "g.txt reaches the step and its run is recorded",
        Duration::from_secs(20),
        &|| w.log(),
        || {
            env.sent().contains(&bytes(&normal))
                && env.runs().iter().any(|r| r["trigger"] == "event")
        },
    );
    let since: Vec<String> = env.runs()[ingested..]
        .iter()
        .map(|r| r["trigger"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        since,
        vec!["event"],
        "only g.txt's run happened:\n{}",
        w.log()
    );
}

// ---- item 7: `parallel` runs slow steps side by side ----

/// The (start, end) of every call of tests/steps/span.py that logged to `logdir`, by
/// start, with the arguments it was given.
fn spans(logdir: &Path) -> Vec<(f64, f64, Vec<String>)> {
    let mut spans: Vec<(f64, f64, Vec<String>)> = std::fs::read_dir(logdir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let v: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
            let args = v["args"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap().to_owned())
                .collect();
            (
                v["start"].as_f64().unwrap(),
                v["end"].as_f64().unwrap(),
                args,
            )
        })
        .collect();
    spans.sort_by(|a, b| a.0.total_cmp(&b.0));
    spans
}

/// The most calls running at one moment.
fn most_at_once(spans: &[(f64, f64, Vec<String>)]) -> usize {
    spans
        .iter()
        .map(|(start, _, _)| {
            spans
                .iter()
                .filter(|(s, e, _)| s <= start && start < e)
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[test]
fn issue_21_parallel_runs_slow_independent_tasks_side_by_side() {
    let env = TestEnv::new();
    let span = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/steps/span.py");
    let logdir = env.home().join("spans");
    let command = serde_json::to_string(&[
        "python3",
        &span.display().to_string(),
        &logdir.display().to_string(),
        "1",
        "{task_id}",
    ])
    .unwrap();
    env.raw_rules(&format!(
        "[actions.retry]\ncommand = {command}\nparallel = 4\n"
    ));
    // Tasks of a step of their own (no memsched action's lock to share).
    let tasks: Vec<Value> = (0..8)
        .map(|i| task(&format!("t{i}"), "embed", json!({})))
        .collect();
    env.state_file("task_queue.json", &json!({ "tasks": tasks }));
    let run = env
        .test()
        .args(&["--once", "--mode", "retry", "--json"])
        .run();
    assert_eq!(run.action("retry")["counts"]["done"], 8);
    let spans = spans(&logdir);
    let mut ran: Vec<String> = spans.iter().map(|s| s.2[0].clone()).collect();
    ran.sort();
    assert_eq!(ran, ["t0", "t1", "t2", "t3", "t4", "t5", "t6", "t7"]);
    let at_once = most_at_once(&spans);
    assert!(
        (2..=4).contains(&at_once),
        "{at_once} tasks ran at once at parallel = 4: {spans:?}"
    );
}

// ---- item 3: no program or script others can write is run ----

fn chown_nobody(path: &Path) {
    std::os::unix::fs::chown(path, Some(65534), Some(65534)).unwrap();
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn issue_21_a_program_on_path_others_can_write_is_refused_naming_it() {
    let env = TestEnv::new();
    env.rules(&["--"], "");
    env.data_file("a.txt", "alpha");
    // A python3 that nobody put in a folder nobody owns and anyone may write, early on PATH.
    let evil = env.home().join("evil");
    std::fs::create_dir(&evil).unwrap();
    let ran_as = env.home().join("ran-as");
    let program = evil.join("python3");
    std::fs::write(
        &program,
        format!("#!/bin/sh\nid -u > '{}'\n", ran_as.display()),
    )
    .unwrap();
    chmod(&program, 0o755);
    chown_nobody(&program);
    chown_nobody(&evil);
    chmod(&evil, 0o777);
    let path = format!("{}:{}", evil.display(), std::env::var("PATH").unwrap());
    env.test()
        .args(&["check"])
        .env("PATH", &path)
        .status(2)
        .stderr_has("{home}/evil/python3: it is owned by nobody, not by you (root) or root (mode 0755, owner nobody, group nogroup); memsched runs no program others can write (fix: chown root {home}/evil/python3)")
        .run();
    let run = env
        .test()
        .args(&["--once", "--mode", "ingest", "--json"])
        .env("PATH", &path)
        .status(1)
        .run();
    assert!(!ran_as.exists(), "the program ran");
    assert!(env.calls().is_empty());
    let error = run.action("ingest")["error"].as_str().unwrap().to_owned();
    let named = format!("{}: it is owned by nobody", program.display());
    assert!(error.contains(&named), "{error}");
    // Its folder is judged too: whoever can write it can put another python3 there.
    std::os::unix::fs::chown(&program, Some(0), Some(0)).unwrap();
    env.test()
        .args(&["--once", "--mode", "ingest"])
        .env("PATH", &path)
        .status(1)
        .stdout_has("{home}/evil/python3: the folder holding it, {home}/evil, is owned by nobody")
        .run();
    assert!(!ran_as.exists(), "the program ran");
    std::os::unix::fs::chown(&evil, Some(0), Some(0)).unwrap();
    env.test()
        .args(&["--once", "--mode", "ingest"])
        .env("PATH", &path)
        .status(1)
        .stdout_has("the folder holding it, {home}/evil, is writable by others (mode 0777, owner root, group root)")
        .stdout_has("(fix: chmod go-w {home}/evil)")
        .run();
    assert!(!ran_as.exists(), "the program ran");
    chmod(&evil, 0o755);
    env.test()
        .args(&["--once", "--mode", "ingest"])
        .env("PATH", &path)
        .run();
    assert_eq!(
        std::fs::read_to_string(&ran_as).unwrap(),
        "0\n",
        "trusted, it runs"
    );
}

#[test]
fn issue_21_a_step_script_others_can_write_is_refused_naming_it() {
    let env = TestEnv::new();
    let script = env.home().join("step.py");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/steps/record.py"),
        &script,
    )
    .unwrap();
    chmod(&script, 0o666);
    let argv = serde_json::to_string(&[
        "python3",
        "step.py",
        &env.log_dir().display().to_string(),
        "--",
        "{files}",
    ])
    .unwrap();
    env.raw_rules(&format!(
        "[actions.ingest]\ncommand = {argv}\nsettle = \"0s\"\n"
    ));
    env.data_file("a.txt", "alpha");
    let refused = "{home}/step.py: it is writable by others (mode 0666, owner root, group root); memsched runs no script others can write (fix: chmod go-w {home}/step.py)";
    env.test()
        .args(&["check"])
        .status(2)
        .stderr_has(refused)
        .stdout_has("REFUSED")
        .run();
    env.test()
        .args(&["--once", "--mode", "ingest"])
        .status(1)
        .stdout_has(refused)
        .run();
    assert!(env.calls().is_empty(), "the script ran");
    chmod(&script, 0o644);
    env.test().args(&["check"]).run();
    env.test().args(&["--once", "--mode", "ingest"]).run();
    assert_eq!(env.calls().len(), 1);
}

// ---- item 9: a mount made or removed under data_dir is heard at once ----

/// A tmpfs mounted on a folder for the test, unmounted when dropped (even when the test
/// fails, so its home can be removed).
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(on: &Path) -> Tmpfs {
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "tmpfs"])
            .arg(on)
            .status()
            .unwrap();
        assert!(status.success(), "mount -t tmpfs (the test runs as root)");
        Tmpfs(on.to_path_buf())
    }

    fn unmount(&mut self) {
        if !self.0.as_os_str().is_empty() {
            let status = std::process::Command::new("umount")
                .arg(&self.0)
                .status()
                .unwrap();
            assert!(status.success(), "umount {}", self.0.display());
            self.0 = std::path::PathBuf::new();
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if !self.0.as_os_str().is_empty() {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
}

#[test]
fn issue_21_a_mount_made_or_removed_under_data_dir_is_heard_without_the_tick() {
    let env = TestEnv::new();
    let sub = env.data().join("sub");
    std::fs::create_dir(&sub).unwrap();
    let ingest = env.step_argv(&["--"]);
    env.raw_rules(&format!(
        "debounce = \"50ms\"\ntick = \"1h\"\n\
         [actions.ingest]\ncommand = {ingest}\nsettle = \"0s\"\n\
         [[rules]]\nname = \"memories\"\nin = \"data\"\npaths = [\"**/*.txt\"]\nrun = [\"ingest\"]\n"
    ));
    let w = env.watch(&[], &[]);
    let mut tmpfs = Tmpfs::mount(&sub);
    // Written into the new file system, whose folders no watch covered when it came.
    let inside = env.write("Data/sub/m.txt", "a memory on the new mount");
    wait_until(
        "m.txt on the new mount reaches the step",
        Duration::from_secs(20),
        &|| w.log(),
        || env.sent().contains(&bytes(&inside)),
    );
    let before = env.runs().len();
    tmpfs.unmount();
    wait_until(
        "a run finds m.txt gone with its mount",
        Duration::from_secs(20),
        &|| w.log(),
        || {
            env.runs()[before..].iter().any(|r| {
                r["actions"].as_array().unwrap().iter().any(|a| {
                    a["reasons"].as_array().is_some_and(|reasons| {
                        reasons
                            .iter()
                            .any(|x| x.as_str().unwrap().starts_with("removed sub/m.txt"))
                    })
                })
            })
        },
    );
}
