//! The always-on watcher against real inotify: each test starts `memsched` without
//! `--once` on a temp pipeline and waits on observable effects with deadlines.

use std::collections::HashSet;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

use crate::util::*;

const DEADLINE: Duration = Duration::from_secs(30);

/// Ingest through the recording step, with a rule for every .txt in data_dir.
fn ingest_rules(env: &TestEnv, step_args: &[&str], debounce: &str) {
    let step = env.step_argv(step_args);
    env.raw_rules(&format!(
        "debounce = \"{debounce}\"\n[actions.ingest]\ncommand = {step}\nsettle = \"0s\"\nbatch_size = 1000\n\n\
         [[rules]]\nname = \"memories\"\nin = \"data\"\npaths = [\"**/*.txt\"]\non = [\"create\", \"modify\", \"rename\"]\nrun = [\"ingest\"]\n"
    ));
}

fn sent_set(env: &TestEnv) -> HashSet<Vec<u8>> {
    env.sent().into_iter().collect()
}

/// Runs of `action` that the watcher made because of events.
fn event_runs(env: &TestEnv, action: &str) -> Vec<Value> {
    env.runs()
        .into_iter()
        .filter(|r| {
            r["trigger"] == "event" && r["modes"].as_array().unwrap().iter().any(|m| m == action)
        })
        .collect()
}

#[test]
fn a_new_memory_file_reaches_the_ingest_step() {
    let env = TestEnv::new();
    ingest_rules(&env, &["--"], "200ms");
    let w = env.watch(&[], &[]);
    let file = env.write("Data/notes/new.txt", "fresh memory");
    wait_until("new.txt reaches the step", DEADLINE, &|| w.log(), || {
        env.sent().contains(&bytes(&file))
    });
    wait_until("the run is recorded", DEADLINE, &|| w.log(), || {
        !event_runs(&env, "ingest").is_empty()
    });
    let run = event_runs(&env, "ingest").pop().unwrap();
    // The folder is new too: its files may land before its watch does, so the new folder
    // itself wakes a reconcile of what it holds.
    assert!(run["woken_by"].to_string().contains("notes"), "{run:#}");
}

#[test]
fn an_editor_style_save_triggers_one_run() {
    let env = TestEnv::new();
    ingest_rules(&env, &["--"], "200ms");
    let file = env.data_file("draft.txt", "v1");
    let w = env.watch(&[], &[]);
    wait_until(
        "the startup run ingests draft.txt",
        DEADLINE,
        &|| w.log(),
        || env.sent().len() == 1,
    );

    // Write a temporary file, then rename it over the original, as editors do.
    let tmp = env.data().join(".draft.txt.swp");
    std::fs::write(&tmp, "v2").unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    wait_until(
        "the saved draft is sent again",
        DEADLINE,
        &|| w.log(),
        || env.sent().len() == 2,
    );

    // A sentinel change afterwards: anything the save still had to trigger came first.
    // Saved while the save's run is under way, the sentinel goes in that run (fresh
    // saves first), so what is waited for is a recorded run that names it.
    let sentinel = env.write("Data/sentinel.txt", "s");
    wait_until(
        "the sentinel is sent and its run recorded",
        DEADLINE,
        &|| w.log(),
        || {
            env.sent().contains(&bytes(&sentinel))
                && env
                    .runs()
                    .iter()
                    .any(|r| r.to_string().contains("sentinel.txt"))
        },
    );
    let sent = env.sent();
    assert_eq!(
        sent.iter().filter(|s| **s == bytes(&file)).count(),
        2,
        "draft.txt: startup and one save"
    );
    let runs_for_save = event_runs(&env, "ingest")
        .iter()
        .filter(|r| r["woken_by"].to_string().contains("draft.txt"))
        .count();
    assert_eq!(runs_for_save, 1);
}

#[test]
fn two_thousand_files_dropped_at_once_arrive_in_a_few_runs_each_once() {
    let env = TestEnv::new();
    ingest_rules(&env, &["--"], "500ms");
    let w = env.watch(&[], &[]);
    let mut expected = HashSet::new();
    for i in 0..2000 {
        expected.insert(bytes(&env.write(
            &format!("Data/drop/d{}/m{i:04}.txt", i % 20),
            &format!("memory {i}"),
        )));
    }
    wait_until(
        "all 2,000 files reach the step",
        Duration::from_secs(120),
        &|| w.log(),
        || env.sent().len() >= 2000,
    );
    let sent = env.sent();
    assert_eq!(sent.len(), 2000, "some file was sent twice");
    assert_eq!(sent_set(&env), expected);
    let runs = event_runs(&env, "ingest").len();
    assert!(runs <= 5, "{runs} runs for one drop of 2,000 files");
}

#[test]
fn an_appended_failed_task_is_retried_and_the_rewrite_does_not_retrigger() {
    let env = TestEnv::new();
    let retry = env.step_argv_raw(&["--", "{task_id}"]);
    let ingest = env.step_argv(&["--"]);
    env.raw_rules(&format!(
        "debounce = \"200ms\"\n[actions.retry]\ncommand = {retry}\n[actions.ingest]\ncommand = {ingest}\nsettle = \"0s\"\n\n\
         [[rules]]\nname = \"queue\"\nin = \"state\"\npaths = [\"task_queue.json\"]\nrun = [\"retry\"]\n\n\
         [[rules]]\nname = \"memories\"\nin = \"data\"\npaths = [\"*.txt\"]\nrun = [\"ingest\"]\n"
    ));
    let w = env.watch(&[], &[]);
    // Another writer adds a failed task, with an atomic replace as the contract asks.
    let tmp = env.state("task_queue.json.tmp");
    std::fs::write(
        &tmp,
        json!({"tasks": [{"id": "embed:1", "step": "embed", "status": "failed", "attempts": 1}]})
            .to_string(),
    )
    .unwrap();
    std::fs::rename(&tmp, env.state("task_queue.json")).unwrap();
    wait_until("the task is retried", DEADLINE, &|| w.log(), || {
        env.calls().len() == 1
    });
    wait_until("the task is recorded done", DEADLINE, &|| w.log(), || {
        env.state_json("task_queue.json")["tasks"][0]["status"] == "done"
    });

    let sentinel = env.write("Data/sentinel.txt", "s");
    wait_until("the sentinel is ingested", DEADLINE, &|| w.log(), || {
        env.sent().contains(&bytes(&sentinel))
    });
    assert_eq!(
        event_runs(&env, "retry").len(),
        1,
        "memsched's own rewrite of the queue retriggered retry\n{}",
        w.log()
    );
    assert!(
        w.log()
            .contains("ignored task_queue.json: memsched's own write"),
        "{}",
        w.log()
    );
}

#[test]
fn a_failed_retry_wakes_the_loop_when_its_backoff_ends() {
    let env = TestEnv::new();
    let retry = env.step_argv_raw(&["--exit", "1", "--", "{task_id}"]);
    env.raw_rules(&format!(
        "[actions.retry]\ncommand = {retry}\nbackoff = {{ initial = \"1s\", jitter = 0.0 }}\nmax_attempts = 3\n"
    ));
    env.state_file(
        "task_queue.json",
        &json!({"tasks": [{"id": "t", "step": "s", "status": "failed", "attempts": 0}]}),
    );
    let w = env.watch(&[], &[]);
    wait_until(
        "the task dies after its attempts",
        DEADLINE,
        &|| w.log(),
        || env.state_json("task_queue.json")["tasks"][0]["status"] == "dead",
    );
    assert_eq!(env.calls().len(), 3);
    // Nothing but the timers could wake those runs: no file changed.
    let timer_runs = || {
        env.runs()
            .iter()
            .filter(|r| r["trigger"] == "timer")
            .count()
    };
    wait_until(
        "both later attempts are recorded as timer runs",
        DEADLINE,
        &|| w.log(),
        || timer_runs() == 2,
    );
}

#[test]
fn a_broken_rules_edit_is_reported_and_the_last_good_rules_stay() {
    let env = TestEnv::new();
    ingest_rules(&env, &["--"], "200ms");
    let w = env.watch(&[], &[]);
    let good = std::fs::read_to_string(env.home().join("watch-rules.toml")).unwrap();
    env.raw_rules(&good.replace("run = [\"ingest\"]", "run = [\"ingets\"]"));
    wait_until("the broken edit is reported", DEADLINE, &|| w.log(), || {
        w.log().contains("rules not reloaded")
    });
    assert!(
        w.log()
            .contains("watch-rules.toml:12:8: unknown action \"ingets\""),
        "{}",
        w.log()
    );
    wait_until(
        "watchdog_state.json names the error",
        DEADLINE,
        &|| w.log(),
        || {
            env.state_json("watchdog_state.json")["watcher"]["rules_error"]
                .as_str()
                .is_some_and(|e| e.contains("ingets"))
        },
    );

    let file = env.write("Data/still.txt", "the old rules still ingest this");
    wait_until(
        "still.txt is ingested under the old rules",
        DEADLINE,
        &|| w.log(),
        || env.sent().contains(&bytes(&file)),
    );
}

#[test]
fn sigterm_during_a_long_step_lets_it_finish_and_exits_cleanly() {
    let env = TestEnv::new();
    ingest_rules(&env, &["--sleep", "2", "--"], "200ms");
    let mut w = env.watch(&[], &[]);
    let file = env.write("Data/slow.txt", "takes a while");
    wait_until("the step starts", DEADLINE, &|| w.log(), || {
        env.sent().contains(&bytes(&file))
    });
    kill(
        Pid::from_raw(i32::try_from(w.pid()).unwrap()),
        Signal::SIGTERM,
    )
    .unwrap();
    assert_eq!(w.wait_exit(DEADLINE), Some(0), "{}", w.log());
    assert!(
        env.state_json("ingest_hash.json")["files"]["slow.txt"].is_object(),
        "the step's work was recorded"
    );
    let last = env.runs().pop().unwrap();
    assert_eq!(last["actions"][0]["outcome"], "ran");
    // The lock is free again: a one-shot run works at once.
    env.test().args(&["--once", "--mode", "ingest"]).run();
}

#[test]
fn a_second_watcher_is_refused_and_a_one_shot_run_works_beside_the_first() {
    let env = TestEnv::new();
    ingest_rules(&env, &["--"], "200ms");
    let w = env.watch(&[], &[]);
    env.test()
        .status(3)
        .stderr_has(&format!("scheduler.lock is held by pid {}", w.pid()))
        .run();
    env.data_file("beside.txt", "x");
    let once = env.run(&["--once", "--mode", "ingest"]);
    assert!(
        matches!(once.status.code(), Some(0 | 3)),
        "{}",
        stdout(&once)
    );
}

#[test]
fn the_pause_marker_defers_runs_and_its_removal_reconciles() {
    let env = TestEnv::new();
    ingest_rules(&env, &["--"], "200ms");
    let w = env.watch(&[], &[]);
    let marker = env.write("Data/.memsched-pause", "");
    wait_until("the pause is noticed", DEADLINE, &|| w.log(), || {
        w.log().contains(".memsched-pause exists")
    });
    let file = env.write("Data/during-pause.txt", "bulk import");
    wait_until("the change is deferred", DEADLINE, &|| w.log(), || {
        w.log().contains("deferred while paused")
    });
    assert!(env.calls().is_empty(), "nothing runs while paused");
    std::fs::remove_file(marker).unwrap();
    wait_until(
        "the file is ingested after the pause",
        DEADLINE,
        &|| w.log(),
        || env.sent().contains(&bytes(&file)),
    );
    wait_until("the resume run is recorded", DEADLINE, &|| w.log(), || {
        env.runs().iter().any(|r| r["trigger"] == "resume")
    });
}

#[test]
fn dropped_events_force_a_rescan_that_loses_no_file() {
    let env = TestEnv::new();
    ingest_rules(&env, &["--"], "200ms");
    // Every change the watcher hears is dropped, as if the loop had fallen behind.
    let w = env.watch(&[], &[("MEMSCHED_TEST_DROP_EVENTS", "1000000")]);
    let mut expected = HashSet::new();
    for i in 0..300 {
        expected.insert(bytes(
            &env.write(&format!("Data/lost/m{i:03}.txt"), &format!("memory {i}")),
        ));
    }
    wait_until(
        "every file arrives through rescans",
        Duration::from_secs(60),
        &|| w.log(),
        || env.sent().len() >= 300,
    );
    assert_eq!(env.sent().len(), 300, "a file was sent twice");
    assert_eq!(sent_set(&env), expected);
    assert!(
        event_runs(&env, "ingest").is_empty(),
        "no event got through"
    );
    wait_until("the rescan run is recorded", DEADLINE, &|| w.log(), || {
        env.runs().iter().any(|r| r["trigger"] == "rescan")
    });
}

#[test]
fn each_tick_sends_a_canary_that_proves_the_watcher_hears() {
    let env = TestEnv::new();
    let step = env.step_argv(&["--"]);
    env.raw_rules(&format!(
        "tick = \"1s\"\ndebounce = \"100ms\"\n[actions.ingest]\ncommand = {step}\nsettle = \"0s\"\n"
    ));
    let w = env.watch(&[], &[]);
    wait_until("a tick's canary comes back", DEADLINE, &|| w.log(), || {
        env.state_json("watchdog_state.json")["watcher"]["canary"]["status"] == "ok"
    });
    wait_until("a tick run is recorded", DEADLINE, &|| w.log(), || {
        env.runs().iter().any(|r| r["trigger"] == "tick")
    });
    // The run is recorded before the loop hears it finished and logs its figure.
    wait_until("the tick's figure is logged", DEADLINE, &|| w.log(), || {
        w.log().contains("found that no event announced")
    });
    // The canary is removed once its event came back.
    let canaries = || {
        std::fs::read_dir(env.data())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with(".memsched-canary")
            })
            .count()
    };
    wait_until("the canary file is removed", DEADLINE, &|| w.log(), || {
        canaries() == 0
    });
    let status = env.run(&["status", "--json"]);
    let health: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(health["watcher"]["kind"], "inotify");
}

#[test]
fn polling_watches_where_inotify_cannot() {
    let env = TestEnv::new();
    ingest_rules(&env, &["--"], "200ms");
    let w = env.watch(&["--poll"], &[]);
    assert!(w.log().contains("(poll)"), "{}", w.log());
    let file = env.write("Data/polled.txt", "seen by a scan");
    wait_until("polled.txt reaches the step", DEADLINE, &|| w.log(), || {
        env.sent().contains(&bytes(&file))
    });
}

/// Issue 11: a rules file kept elsewhere (a dotfiles repository) behind a link. Editing
/// its target and re-pointing the link are both edits of the rules; after a re-point, the
/// new target's edits are heard too.
#[test]
fn a_linked_rules_file_is_followed_through_edits_and_re_pointing() {
    let env = TestEnv::new();
    let rules_with = |marker: &[&str]| {
        let mut args = marker.to_vec();
        args.push("--");
        let step = env.step_argv(&args);
        format!(
            "debounce = \"50ms\"\n[actions.ingest]\ncommand = {step}\nsettle = \"0s\"\n\
             [[rules]]\nname = \"memories\"\nin = \"data\"\npaths = [\"**/*.txt\"]\nrun = [\"ingest\"]\n"
        )
    };
    let a = env.write("dotfiles/a.toml", &rules_with(&["--sleep", "0"]));
    let b = env.write("dotfiles2/b.toml", &rules_with(&["--sleep", "0"]));
    let link = env.home().join("watch-rules.toml");
    std::os::unix::fs::symlink(&a, &link).unwrap();
    let w = env.watch(&[], &[]);
    let reloads = || w.log().matches("rules reloaded").count();
    std::fs::write(&a, rules_with(&["--sleep", "0"]) + "\n# edited\n").unwrap();
    wait_until(
        "an edit of the target reloads",
        DEADLINE,
        &|| w.log(),
        || reloads() >= 1,
    );
    // Re-point the link as `ln -sfn` does: a new link renamed over the old one.
    let tmp = env.home().join(".watch-rules.toml.new");
    std::os::unix::fs::symlink(&b, &tmp).unwrap();
    std::fs::rename(&tmp, &link).unwrap();
    wait_until(
        "re-pointing the link reloads",
        DEADLINE,
        &|| w.log(),
        || reloads() >= 2,
    );
    std::fs::write(&b, rules_with(&["--exit", "0"])).unwrap();
    wait_until(
        "an edit of the new target reloads",
        DEADLINE,
        &|| w.log(),
        || reloads() >= 3,
    );
    let file = env.write("Data/after.txt", "under b.toml's rules");
    wait_until("the new rules run", DEADLINE, &|| w.log(), || {
        env.sent().contains(&bytes(&file))
    });
}

/// Context switches of every thread of process `pid` so far: how often it woke.
fn wakeups(pid: u32) -> u64 {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .flat_map(|status| {
            status
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .sum()
}

/// Issue 8: the ingest step reads every memory it is given, and so do memsched's own
/// hashing runs. Reading a file (open, read, close without writing) changes nothing and
/// must wake no thread of the watcher; notify's backend heard two events per read.
#[test]
fn reading_memory_files_wakes_no_thread_of_the_watcher() {
    let env = TestEnv::new();
    ingest_rules(&env, &["--"], "200ms");
    let file = env.data_file("read-me.txt", "read many times, never written");
    let w = env.watch(&[], &[]);
    wait_until("read-me.txt is ingested", DEADLINE, &|| w.log(), || {
        env.sent().contains(&bytes(&file))
    });
    // The startup run's own writes are heard (and dropped) after it is recorded: wait
    // until the watcher has been still for ten looks in a row.
    let (mut last, mut still) = (wakeups(w.pid()), 0);
    wait_until("the watcher falls idle", DEADLINE, &|| w.log(), || {
        let now = wakeups(w.pid());
        still = if now == last { still + 1 } else { 0 };
        last = now;
        still >= 10
    });
    let reads = 2000;
    for _ in 0..reads {
        std::fs::read(&file).unwrap();
    }
    let woke = wakeups(w.pid()) - last;
    assert!(
        woke < 10,
        "{reads} reads of a memory file woke the watcher {woke} times\n{}",
        w.log()
    );
}
