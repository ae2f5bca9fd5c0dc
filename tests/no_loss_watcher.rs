//! The promise that no memory is lost (issue 9), the watcher's cases: it goes on after a
//! panicking run, follows a data_dir deleted or moved and made again, a reload naming
//! another pause marker, a lock held elsewhere, the tick's count, and polling.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use pretty_assertions::assert_eq;

use crate::util::*;

/// Issue 9, case 4: in the watcher a panicking run is recorded as failed and the loop goes
/// on: the next change still runs, and SIGTERM still stops it.
#[test]
fn issue_9_the_watcher_goes_on_after_a_panicking_run() {
    let env = TestEnv::new();
    let ingest = env.step_argv(&["--"]);
    env.raw_rules(&format!(
        "debounce = \"50ms\"\n\
         [actions.ingest]\ncommand = {ingest}\nsettle = \"0s\"\n\
         [actions.retry]\ncommand = [\"true\", \"{{task_id}}\"]\n\
         [[rules]]\nname = \"memories\"\nin = \"data\"\npaths = [\"**/*.txt\"]\nrun = [\"ingest\"]\n"
    ));
    let mut watcher = env.watch(&[], &[("MEMSCHED_TEST_PANIC", "retry")]);
    let startup = env.runs()[0].clone();
    assert_eq!(startup["actions"][0]["outcome"], "failed", "{startup:#}");
    let file = env.data_file("b.txt", "beta");
    wait_until(
        "the new file reaches the step after the panicking run",
        std::time::Duration::from_secs(10),
        &|| watcher.log(),
        || env.sent().contains(&bytes(&file)),
    );
    kill(
        Pid::from_raw(i32::try_from(watcher.pid()).unwrap()),
        Signal::SIGTERM,
    )
    .unwrap();
    assert_eq!(
        watcher.wait_exit(std::time::Duration::from_secs(10)),
        Some(0)
    );
}

/// A watcher whose only way to hear anything is an event: the tick is an hour away.
fn eventful_watcher(env: &TestEnv) -> Watcher {
    let ingest = env.step_argv(&["--"]);
    watcher_rules(env, "debounce = \"50ms\"\ntick = \"1h\"", &ingest);
    env.watch(&[], &[])
}

/// Rules for a watcher: `global` settings, the ingest `command` (a TOML argument vector)
/// with `settle = "0s"`, and one rule sending every .txt in data_dir to ingest.
pub(crate) fn watcher_rules(env: &TestEnv, global: &str, command: &str) {
    env.raw_rules(&format!(
        "{global}\n[actions.ingest]\ncommand = {command}\nsettle = \"0s\"\n\
         [[rules]]\nname = \"memories\"\nin = \"data\"\npaths = [\"**/*.txt\"]\nrun = [\"ingest\"]\n"
    ));
}

/// Issue 9, case 6: data_dir deleted and made again (a sync tool, a restore): its watches
/// went with it, so the watcher must watch the new folder at once, not at the next tick.
#[test]
fn issue_9_a_data_dir_deleted_and_made_again_is_watched_again() {
    let env = TestEnv::new();
    let w = eventful_watcher(&env);
    std::fs::remove_dir_all(env.data()).unwrap();
    std::fs::create_dir(env.data()).unwrap();
    let file = env.write("Data/b.txt", "written into the new Data");
    wait_until(
        "b.txt reaches the step",
        std::time::Duration::from_secs(20),
        &|| w.log(),
        || env.sent().contains(&bytes(&file)),
    );
    let later = env.write("Data/c.txt", "and the new folder's events are heard");
    wait_until(
        "c.txt reaches the step",
        std::time::Duration::from_secs(20),
        &|| w.log(),
        || env.sent().contains(&bytes(&later)),
    );
}

/// Issue 9, case 6: data_dir moved away and a new one made in its place. Events from the
/// old folder must not be taken for the new one's.
#[test]
fn issue_9_a_data_dir_moved_away_and_replaced_is_watched_again() {
    let env = TestEnv::new();
    let w = eventful_watcher(&env);
    std::fs::rename(env.data(), env.home().join("Data.old")).unwrap();
    std::fs::create_dir(env.data()).unwrap();
    let file = env.write("Data/b.txt", "written into the new Data");
    wait_until(
        "b.txt reaches the step",
        std::time::Duration::from_secs(20),
        &|| w.log(),
        || env.sent().contains(&bytes(&file)),
    );
    env.write("Data.old/ghost.txt", "not a memory any more");
    let later = env.write("Data/c.txt", "the new folder");
    wait_until(
        "c.txt reaches the step",
        std::time::Duration::from_secs(20),
        &|| w.log(),
        || env.sent().contains(&bytes(&later)),
    );
    assert!(
        !w.log().contains("ghost.txt"),
        "an event of the old folder was taken for data_dir's:\n{}",
        w.log()
    );
}

/// Issue 9, case 11: the pause marker is re-read, not only heard. A reload that names
/// another marker while paused must resume, and the pause shows in watchdog_state.json.
#[test]
fn issue_9_a_reload_naming_another_pause_marker_resumes_and_the_pause_is_reported() {
    let env = TestEnv::new();
    let ingest = env.step_argv(&["--"]);
    let rules = |marker: &str| {
        format!(
            "debounce = \"50ms\"\ntick = \"1h\"\npause_file = \"{marker}\"\n\
             [actions.ingest]\ncommand = {ingest}\nsettle = \"0s\"\n\
             [[rules]]\nname = \"memories\"\nin = \"data\"\npaths = [\"**/*.txt\"]\nrun = [\"ingest\"]\n"
        )
    };
    env.raw_rules(&rules(".memsched-pause"));
    let w = env.watch(&[], &[]);
    env.write("Data/.memsched-pause", "");
    wait_until(
        "the pause shows in watchdog_state.json",
        std::time::Duration::from_secs(20),
        &|| w.log(),
        || env.state_json("watchdog_state.json")["watcher"]["paused_since"].is_string(),
    );
    let file = env.write("Data/held.txt", "written while paused");
    wait_until(
        "held.txt is deferred",
        std::time::Duration::from_secs(20),
        &|| w.log(),
        || w.log().contains("deferred while paused"),
    );
    assert!(env.sent().is_empty(), "nothing runs while paused");
    env.raw_rules(&rules(".sync-in-progress"));
    wait_until(
        "held.txt is sent once the rules name a marker that does not exist",
        std::time::Duration::from_secs(20),
        &|| w.log(),
        || env.sent().contains(&bytes(&file)),
    );
    assert!(env.state_json("watchdog_state.json")["watcher"]["paused_since"].is_null());
}

/// Issue 9, case 12: a watcher run skipped because a `--once` held the action's lock runs
/// again once the lock is free: the `--once` planned before the new file existed.
#[test]
fn issue_9_a_run_skipped_for_a_held_lock_runs_once_the_lock_is_free() {
    let env = TestEnv::new();
    let ingest = env.step_argv(&["--sleep", "2", "--"]);
    watcher_rules(&env, "debounce = \"50ms\"\ntick = \"1h\"", &ingest);
    let first = env.data_file("first.txt", "planned by the one-shot run");
    let mut once = env
        .command(&["--once"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until(
        "the one-shot run's step holds the lock",
        std::time::Duration::from_secs(20),
        &String::new,
        || env.sent().contains(&bytes(&first)),
    );
    let w = env.watch(&[], &[]);
    let second = env.write("Data/second.txt", "written while the lock is held");
    wait_until(
        "second.txt reaches the step once the one-shot run is done",
        std::time::Duration::from_secs(20),
        &|| w.log(),
        || env.sent().contains(&bytes(&second)),
    );
    assert!(once.wait().unwrap().success());
}

/// Issue 9, case 14: the tick's "found that no event announced" counts only what no
/// pending change asked for. Here the file's change is still in its (long) debounce when a
/// tick comes and takes it: announced, so the figure stays 0.
#[test]
fn issue_9_the_tick_counts_only_what_no_event_announced() {
    let env = TestEnv::new();
    let ingest = env.step_argv(&["--"]);
    watcher_rules(
        &env,
        "debounce = \"5s\"\nmax_wait = \"10s\"\ntick = \"1s\"",
        &ingest,
    );
    let w = env.watch(&[], &[]);
    let file = env.write(
        "Data/announced.txt",
        "its event is pending when the tick comes",
    );
    wait_until(
        "a tick takes the file",
        std::time::Duration::from_secs(20),
        &|| w.log(),
        || env.sent().contains(&bytes(&file)),
    );
    let ticks = w.log().matches("tick: ").count();
    wait_until(
        "the tick's figure is logged",
        std::time::Duration::from_secs(20),
        &|| w.log(),
        || w.log().matches("tick: ").count() > ticks,
    );
    assert!(
        !w.log().contains("tick: 1 item"),
        "an announced file was counted as unannounced:\n{}",
        w.log()
    );
}

/// Issue 9, case 13: polling (for network file systems) hears a file replaced by one with
/// an older mtime, as `rsync -a`, `cp -p` and restores make.
#[test]
fn issue_9_polling_hears_a_file_replaced_by_an_older_one() {
    let env = TestEnv::new();
    let ingest = env.step_argv(&["--"]);
    watcher_rules(&env, "debounce = \"50ms\"\ntick = \"1h\"", &ingest);
    let file = env.write("Data/notes.txt", "today's notes");
    let w = env.watch(&["--poll"], &[]);
    assert!(
        env.sent().contains(&bytes(&file)),
        "the startup run sends it"
    );
    let restored = env.write("restore.tmp", "last week's notes, restored");
    set_old(&restored);
    std::fs::rename(&restored, &file).unwrap();
    wait_until(
        "the restored content reaches the step",
        std::time::Duration::from_secs(20),
        &|| w.log(),
        || env.calls().len() > 1,
    );
    assert_eq!(env.calls()[1].args, [bytes(&file)], "{}", w.log());
}
