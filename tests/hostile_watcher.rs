//! Hostile round three, the watcher's part (issue 18): a watch limit reached at run time, a
//! re-pointed data_dir link, rescans that go uncounted, health vaguer than it knows. Each
//! case through the real binary, waiting on effects with deadlines.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::util::*;

const DEADLINE: Duration = Duration::from_secs(30);

/// Ingest through the recording step, with a rule for every .txt in data_dir.
fn ingest_rules(env: &TestEnv) {
    let step = env.step_argv(&["--"]);
    env.raw_rules(&format!(
        "debounce = \"200ms\"\n[actions.ingest]\ncommand = {step}\nsettle = \"0s\"\nbatch_size = 1000\n\n\
         [[rules]]\nname = \"memories\"\nin = \"data\"\npaths = [\"**/*.txt\"]\non = [\"create\", \"modify\", \"rename\"]\nrun = [\"ingest\"]\n"
    ));
}

fn sent_set(env: &TestEnv) -> HashSet<Vec<u8>> {
    env.sent().into_iter().collect()
}

// ---- item 9: the inotify watch limit reached at run time ----

/// A watcher in a user namespace of its own whose inotify watch limit is `limit`: the
/// limit of that namespace only (`/proc/sys/user/max_inotify_watches`), so the other
/// tests running beside it, and the machine's own `fs.inotify.max_user_watches`, are
/// untouched. Killed when dropped.
struct Confined {
    child: Child,
    log: PathBuf,
}

impl Confined {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Confined {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether this machine lets us make a user namespace (`unshare -U -r`).
fn user_namespaces() -> bool {
    Command::new("unshare")
        .args(["-U", "-r", "true"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn watch_confined(env: &TestEnv, limit: u32) -> Confined {
    let log = env.home().join("watcher.log");
    let script = format!("echo {limit} > /proc/sys/user/max_inotify_watches && exec \"$0\" \"$@\"");
    let mut cmd = Command::new("unshare");
    cmd.args(["-U", "-r", "sh", "-c", &script, BIN, "--paths"])
        .arg(env.home().join("paths.json"))
        .current_dir(env.home())
        .env("HOME", env.home())
        .env("XDG_CONFIG_HOME", env.home().join(".config"))
        .env_remove("MEMSCHED_PATHS")
        .env("RUST_LOG", "memsched=debug")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let watcher = Confined {
        child: cmd.spawn().unwrap(),
        log,
    };
    wait_until(
        "the startup run is recorded",
        Duration::from_secs(20),
        &|| watcher.log(),
        || env.runs().iter().any(|r| r["trigger"] == "startup"),
    );
    watcher
}

#[test]
fn issue_18_the_watch_limit_reached_at_run_time_falls_back_to_polling_and_says_so() {
    if !user_namespaces() {
        eprintln!("skipped: no user namespaces here (unshare -U -r fails)");
        return;
    }
    let env = TestEnv::new();
    ingest_rules(&env);
    for i in 0..5 {
        std::fs::create_dir_all(env.data().join(format!("old{i}"))).unwrap();
    }
    // Room for the folders there at start (data_dir, its five, the home and state/), and
    // two more.
    let w = watch_confined(&env, 10);
    assert!(w.log().contains("(inotify)"), "{}", w.log());
    let mut expected = HashSet::new();
    for i in 0..61 {
        let file = env.write(&format!("Data/new{i:02}/m.txt"), &format!("memory {i}"));
        expected.insert(bytes(&file));
    }
    wait_until(
        "every new folder's file is sent",
        DEADLINE,
        &|| w.log(),
        || sent_set(&env).is_superset(&expected),
    );
    // An edit in a folder no watch could be had for is heard all the same.
    let late = env.write("Data/new60/late.txt", "written after the limit");
    wait_until("the later edit is sent", DEADLINE, &|| w.log(), || {
        sent_set(&env).contains(&bytes(&late))
    });
    wait_until(
        "the watcher reports it polls",
        DEADLINE,
        &|| w.log(),
        || env.state_json("watchdog_state.json")["watcher"]["kind"] == "poll",
    );
    env.test()
        .args(&["status"])
        .status(1)
        .stdout_has("memsched status: DEGRADED")
        .stdout_has("the watcher polls every 2s instead of hearing changes through inotify: the inotify watch limit (fs.inotify.max_user_watches) was reached at {home}/Data/new")
        .run();
}

// ---- item 8: a re-pointed data_dir link ----

/// The step's arguments that name a file called `name`.
fn sent_named(env: &TestEnv, name: &str) -> bool {
    env.sent().iter().any(|p| p.ends_with(name.as_bytes()))
}

#[test]
fn issue_18_a_re_pointed_data_dir_link_is_followed_at_once() {
    let env = TestEnv::new();
    ingest_rules(&env);
    std::fs::remove_dir(env.data()).unwrap();
    env.write("D1/first.txt", "in the first folder");
    env.write("D2/waiting.txt", "in the second folder before the switch");
    std::os::unix::fs::symlink("D1", env.data()).unwrap();
    let w = env.watch(&[], &[]);
    assert!(sent_named(&env, "first.txt"), "{}", w.log());
    // `ln -sfn D2 Data`: a new link renamed over the old one.
    let tmp = env.home().join("Data.tmp");
    std::os::unix::fs::symlink("D2", &tmp).unwrap();
    std::fs::rename(&tmp, env.data()).unwrap();
    wait_until("the switch is noticed", DEADLINE, &|| w.log(), || {
        w.log().contains("D2")
    });
    wait_until("what D2 held is sent", DEADLINE, &|| w.log(), || {
        sent_named(&env, "waiting.txt")
    });
    env.write("D2/after.txt", "written in the new folder");
    wait_until(
        "a file written in D2 is sent",
        DEADLINE,
        &|| w.log(),
        || sent_named(&env, "after.txt"),
    );
}

// ---- item 13: every rescan is counted in watchdog_state.json ----

/// The `rescans` the watcher last reported.
fn rescans(env: &TestEnv) -> u64 {
    std::fs::read_to_string(env.state("watchdog_state.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["watcher"]["rescans"].as_u64())
        .unwrap_or(0)
}

#[test]
fn issue_18_a_real_queue_overflow_is_a_counted_rescan_that_loses_no_file() {
    let env = TestEnv::new();
    ingest_rules(&env);
    let w = env.watch(&[], &[]);
    let pid = nix::unistd::Pid::from_raw(i32::try_from(w.pid()).unwrap());
    // Stopped, the watcher reads nothing: three events a file overflow the kernel's
    // queue (fs.inotify.max_queued_events, 16384 by default) without touching it.
    let queue: usize = std::fs::read_to_string("/proc/sys/fs/inotify/max_queued_events")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let files = queue / 3 + 500;
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let mut expected = HashSet::new();
    for i in 0..files {
        expected.insert(bytes(&env.write(&format!("Data/m{i:05}.txt"), "m")));
    }
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    wait_until("the overflow is heard", DEADLINE, &|| w.log(), || {
        w.log().contains("rescan flag")
    });
    wait_until(
        "every file is sent",
        Duration::from_secs(90),
        &|| w.log(),
        || sent_set(&env).is_superset(&expected),
    );
    wait_until("the rescan is counted", DEADLINE, &|| w.log(), || {
        rescans(&env) >= 1
    });
}

#[test]
fn issue_18_a_dropped_events_rescan_is_counted() {
    let env = TestEnv::new();
    ingest_rules(&env);
    let w = env.watch(&[], &[("MEMSCHED_TEST_DROP_EVENTS", "1000000")]);
    let file = env.write("Data/lost.txt", "dropped on purpose");
    wait_until(
        "the file arrives through a rescan",
        DEADLINE,
        &|| w.log(),
        || sent_set(&env).contains(&bytes(&file)),
    );
    wait_until("the rescan is counted", DEADLINE, &|| w.log(), || {
        rescans(&env) >= 1
    });
}

// ---- item 14: health names what it knows ----

/// memsched in a user namespace that maps no one: root's files are its own by owner bits
/// alone (no capability overrides them), so a file of mode 000 cannot be read, as for a
/// user who runs memsched under their own account.
fn unmapped(env: &TestEnv, args: &[&str]) -> std::process::Output {
    Command::new("unshare")
        .arg("-U")
        .arg(BIN)
        .arg("--paths")
        .arg(env.home().join("paths.json"))
        .args(args)
        .current_dir(env.home())
        .env("HOME", env.home())
        .env("XDG_CONFIG_HOME", env.home().join(".config"))
        .env_remove("MEMSCHED_PATHS")
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

#[test]
fn issue_18_health_names_a_memory_file_it_cannot_read() {
    if !user_namespaces() {
        eprintln!("skipped: no user namespaces here (unshare -U fails)");
        return;
    }
    let env = TestEnv::new();
    env.rules(&["--"], "");
    env.data_file("readable.txt", "fine");
    let locked = env.data_file("locked.txt", "no one may read this");
    std::fs::set_permissions(&locked, std::os::unix::fs::PermissionsExt::from_mode(0o000)).unwrap();
    let once = unmapped(&env, &["--once", "--mode", "ingest"]);
    assert!(stdout(&once).contains("1 unreadable"), "{}", stdout(&once));
    let status = unmapped(&env, &["status"]);
    let shown = stdout(&status);
    assert_eq!(status.status.code(), Some(1), "{shown}");
    assert!(shown.contains("memsched status: DEGRADED"), "{shown}");
    assert!(
        shown.contains("cannot read 1 entry in data_dir: locked.txt (Permission denied"),
        "{shown}"
    );
}

#[test]
fn issue_18_health_tells_tasks_that_never_run_from_tasks_waiting_for_a_retry() {
    let run = crate::harness::Test::new()
        .retry_rules(&[], "")
        .state_file(
            "task_queue.json",
            &serde_json::json!({"tasks": [
                {"id": "ok", "step": "x", "status": "failed", "attempts": 1},
                {"id": "twin", "step": "x", "status": "failed", "attempts": 1},
                {"id": "twin", "step": "x", "status": "failed", "attempts": 1},
                {"step": "x", "status": "failed", "attempts": 1}
            ]}),
        )
        .args(&["status"])
        .status(1)
        .stdout_has("1 failed task waits for a retry")
        .stdout_has(
            "3 failed tasks never run (no id, or an id another task shares): \"twin\", \"twin\", task #4",
        )
        .run();
    assert!(
        !run.stdout().contains("4 failed tasks wait"),
        "{}",
        run.stdout()
    );
}
