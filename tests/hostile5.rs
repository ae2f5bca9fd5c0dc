//! Hostile round three, part two (issue 21 items 3, 4, 7 and 9), through the real binary:
//! a file dated in the future, `parallel` with slow steps, programs others can write, and
//! a mount made under data_dir while watching.

use std::path::Path;
use std::time::{Duration, SystemTime};

use pretty_assertions::assert_eq;

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
