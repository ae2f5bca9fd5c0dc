//! Ctrl-C during `--once` (issue 11): the first says what memsched waits for and lets the
//! step finish; the second ends the step's whole process group; the run is recorded as
//! interrupted and memsched exits 130. Real signals, a real sleeping step, deadlines.

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use crate::util::{TestEnv, wait_until};

/// A `--once` run in the background, its stderr in a file of the home.
struct Once {
    child: Child,
    err: PathBuf,
}

impl Once {
    fn start(env: &TestEnv, args: &[&str]) -> Once {
        let err = env.home().join("once.err");
        let child = env
            .command(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .unwrap();
        Once { child, err }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.child.id().try_into().unwrap()), signal).unwrap();
    }

    fn wait_exit(&mut self) -> Option<i32> {
        let mut status = None;
        let err = self.err.clone();
        let child = &mut self.child;
        wait_until(
            "memsched exits",
            Duration::from_secs(20),
            &|| std::fs::read_to_string(&err).unwrap_or_default(),
            || {
                status = child.try_wait().unwrap();
                status.is_some()
            },
        );
        status.and_then(|s| s.code())
    }
}

impl Drop for Once {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The pid of the recording step's first call, once it has started.
fn step_pid(env: &TestEnv, once: &Once) -> i32 {
    let mut pid = None;
    wait_until(
        "the step starts",
        Duration::from_secs(20),
        &|| once.stderr(),
        || {
            pid = std::fs::read_dir(env.log_dir())
                .into_iter()
                .flatten()
                .map(|e| e.unwrap().path())
                .find(|p| p.extension().is_some_and(|x| x == "json"))
                .map(|p| {
                    let v: Value =
                        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
                    i32::try_from(v["pid"].as_i64().unwrap()).unwrap()
                });
            pid.is_some()
        },
    );
    pid.unwrap()
}

/// Whether `pid` is gone (or a zombie, which holds nothing).
fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

fn last_run(env: &TestEnv) -> Value {
    env.runs().last().cloned().expect("the run is recorded")
}

fn outcome(run: &Value, action: &str) -> Value {
    run["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["action"] == action)
        .unwrap_or_else(|| panic!("no {action} in {run:#}"))["outcome"]
        .clone()
}

#[test]
fn issue_11_a_second_ctrl_c_ends_the_steps_process_group_and_exits_130() {
    let env = TestEnv::new();
    env.rules(&["--sleep", "120", "--"], "[actions.watchdog]\n");
    env.data_file("a.txt", "alpha");
    let mut once = Once::start(&env, &["--once"]);
    let pid = step_pid(&env, &once);

    once.signal(Signal::SIGINT);
    wait_until(
        "the first Ctrl-C says what it waits for",
        Duration::from_secs(10),
        &|| once.stderr(),
        || once.stderr().contains("press Ctrl-C again"),
    );
    let said = once.stderr();
    assert!(
        said.contains(&format!("the ingest step python3 (pid {pid}")),
        "{said}"
    );
    assert!(!gone(pid), "the first Ctrl-C must let the step run");

    once.signal(Signal::SIGINT);
    assert_eq!(once.wait_exit(), Some(130), "{}", once.stderr());
    assert!(gone(pid), "step {pid} outlived the second Ctrl-C");
    assert!(once.stderr().contains("memsched: ending the ingest step"));

    let run = last_run(&env);
    assert_eq!(run["interrupted"], true, "{run:#}");
    assert_eq!(run["exit_code"], 130);
    assert_eq!(outcome(&run, "ingest"), "interrupted");
    assert_eq!(outcome(&run, "watchdog"), "skipped");
}

#[test]
fn issue_11_a_first_ctrl_c_lets_the_step_finish_and_starts_no_other() {
    let env = TestEnv::new();
    env.rules(&["--sleep", "2", "--"], "[actions.watchdog]\n");
    env.data_file("a.txt", "alpha");
    let mut once = Once::start(&env, &["--once"]);
    step_pid(&env, &once);
    once.signal(Signal::SIGTERM);
    assert_eq!(once.wait_exit(), Some(130), "{}", once.stderr());
    assert!(
        once.stderr()
            .contains("SIGTERM: stopping after the ingest step")
    );

    let run = last_run(&env);
    assert_eq!(run["interrupted"], true, "{run:#}");
    assert_eq!(outcome(&run, "ingest"), "ran");
    assert_eq!(outcome(&run, "watchdog"), "skipped");
    // The finished step's work is kept: the file counts as ingested.
    assert!(
        env.state_json("ingest_hash.json")["files"]
            .get("a.txt")
            .is_some()
    );
}
