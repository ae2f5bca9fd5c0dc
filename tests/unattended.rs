//! The watcher run unattended (issue 11): under systemd's `Type=notify` it says READY,
//! keeps its watchdog fed and reports a status line; a second Ctrl-C ends the running
//! step's whole process group instead of waiting out its timeout.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::util::*;

const DEADLINE: Duration = Duration::from_secs(20);

fn ingest_rules(env: &TestEnv, step_args: &[&str]) {
    let mut args = step_args.to_vec();
    args.push("--");
    let step = env.step_argv(&args);
    env.raw_rules(&format!(
        "debounce = \"50ms\"\n[actions.ingest]\ncommand = {step}\nsettle = \"0s\"\n\
         [[rules]]\nname = \"memories\"\nin = \"data\"\npaths = [\"**/*.txt\"]\nrun = [\"ingest\"]\n"
    ));
}

fn signal(pid: u32, signal: Signal) {
    kill(Pid::from_raw(i32::try_from(pid).unwrap()), signal).unwrap();
}

#[test]
fn a_second_ctrl_c_ends_the_running_step_and_the_watcher() {
    let env = TestEnv::new();
    ingest_rules(&env, &["--sleep", "60"]);
    let mut w = env.watch(&[], &[]);
    env.write("Data/slow.txt", "a step that would run a minute");
    wait_until("the step runs", DEADLINE, &|| w.log(), || {
        !env.calls().is_empty()
    });
    signal(w.pid(), Signal::SIGINT);
    wait_until(
        "the first Ctrl-C says what it waits for",
        DEADLINE,
        &|| w.log(),
        || w.log().contains("press Ctrl-C again"),
    );
    signal(w.pid(), Signal::SIGINT);
    let began = Instant::now();
    assert_eq!(w.wait_exit(DEADLINE), Some(0), "{}", w.log());
    assert!(
        began.elapsed() < Duration::from_secs(30),
        "the watcher waited out the step"
    );
    let run = env.runs().pop().unwrap();
    assert_eq!(run["actions"][0]["outcome"], "interrupted", "{run:#}");
}

#[test]
fn under_systemd_the_watcher_says_ready_feeds_the_watchdog_and_reports_its_runs() {
    let env = TestEnv::new();
    ingest_rules(&env, &[]);
    let socket_path = env.home().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let socket_env = socket_path.display().to_string();
    let w = env.watch(
        &[],
        &[("NOTIFY_SOCKET", &socket_env), ("WATCHDOG_USEC", "400000")],
    );
    let mut heard = Vec::new();
    let mut buf = [0u8; 512];
    let wanted = |heard: &[String]| {
        ["READY=1", "WATCHDOG=1", "STATUS="]
            .iter()
            .all(|m| heard.iter().any(|h| h.starts_with(m)))
    };
    let deadline = Instant::now() + DEADLINE;
    let mut wrote = false;
    while !wanted(&heard) {
        assert!(
            Instant::now() < deadline,
            "systemd heard only {heard:?}\n{}",
            w.log()
        );
        if heard.iter().any(|h| h == "READY=1") && !wrote {
            env.write("Data/a.txt", "a run to report");
            wrote = true;
        }
        if let Ok(n) = socket.recv(&mut buf) {
            heard.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
}
