//! Fresh saves first (issue 19): a memory saved while a long ingest run is under way goes
//! into that run's next batch, not behind every batch the run had planned. Through the
//! real watcher, with a one-shot step double (tests/steps/record.py) and the resident one
//! (tests/steps/resident.py), each holding its first batch in flight until the test lets
//! it go, so what the watcher hears meanwhile needs no race.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::util::*;

const DEADLINE: Duration = Duration::from_secs(30);

/// How long the watcher may take to say it handed a save to the run under way.
const HANDED_WITHIN: Duration = Duration::from_secs(30);

/// The rules around an ingest `command` with one file per batch, and a data rule for every
/// .txt.
fn rules(env: &TestEnv, command: &str, extra: &str) {
    env.raw_rules(&format!(
        "debounce = \"100ms\"\ntick = \"1h\"\n\
         [actions.ingest]\ncommand = {command}\nsettle = \"0s\"\nbatch_size = 1\n{extra}\n\
         [[rules]]\nname = \"memories\"\nin = \"data\"\npaths = [\"**/*.txt\"]\nrun = [\"ingest\"]\n"
    ));
}

/// The file the step doubles wait for before they let a held batch end.
fn release_file(env: &TestEnv) -> std::path::PathBuf {
    env.log_dir().join("release")
}

/// Writes three memories at once (the held one first in path order), waits until the
/// run's first batch is in flight (`in_flight`), saves `z-fresh.txt`, waits for the
/// watcher to say it handed the save to the run, then lets the held batch end.
fn save_during_a_run(env: &TestEnv, w: &Watcher, in_flight: &dyn Fn() -> bool) {
    env.write("Data/a-SLOW.txt", "SLOW");
    env.write("Data/b.txt", "beta");
    env.write("Data/c.txt", "gamma");
    wait_until(
        "the first batch is in flight",
        DEADLINE,
        &|| w.log(),
        in_flight,
    );
    env.write("Data/z-fresh.txt", "fresh");
    wait_until(
        "the watcher hands the save to the run under way",
        HANDED_WITHIN,
        &|| w.log(),
        || w.log().contains("z-fresh.txt: saved while ingest runs"),
    );
    std::fs::write(release_file(env), "").unwrap();
}

/// The file names of `paths`, in order.
fn names<'a>(paths: impl Iterator<Item = &'a Path>) -> Vec<String> {
    paths
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

/// The ingest reports of the runs recorded so far, oldest first.
fn ingest_reports(env: &TestEnv) -> Vec<Value> {
    env.runs()
        .iter()
        .filter_map(|r| {
            r["actions"]
                .as_array()?
                .iter()
                .find(|a| a["action"] == "ingest")
                .cloned()
        })
        .collect()
}

/// Waits until the runs after the startup run are recorded and the last of them found
/// nothing left to send: the save went in once, in the run it was heard during.
fn settled_with_one_send(env: &TestEnv, w: &Watcher) -> Vec<Value> {
    wait_until(
        "a run after the save finds nothing left to send",
        DEADLINE,
        &|| w.log(),
        || {
            let reports = ingest_reports(env);
            reports.len() >= 3 && reports.last().unwrap()["outcome"] == "nothing-to-do"
        },
    );
    ingest_reports(env)
}

#[test]
fn issue_19_a_save_during_a_long_run_goes_into_its_next_batch_one_shot() {
    let env = TestEnv::new();
    let release = release_file(&env).display().to_string();
    let command = env.step_argv(&["--hold-on", "SLOW", &release, "--"]);
    rules(&env, &command, "");
    let w = env.watch(&[], &[]);
    let sent = || {
        names(
            env.sent()
                .iter()
                .map(|a| Path::new(std::ffi::OsStr::new(std::str::from_utf8(a).unwrap()))),
        )
    };
    save_during_a_run(&env, &w, &|| sent().contains(&"a-SLOW.txt".to_owned()));
    wait_until("every file is sent", DEADLINE, &|| w.log(), || {
        sent().len() >= 4
    });
    assert_eq!(
        sent(),
        ["a-SLOW.txt", "z-fresh.txt", "b.txt", "c.txt"],
        "the save waited behind the batches planned before it\n--- log\n{}",
        w.log()
    );
    let reports = settled_with_one_send(&env, &w);
    assert_eq!(sent().len(), 4, "a file was sent twice: {:?}", sent());
    let burst = &reports[reports.len() - 2];
    assert_eq!(burst["counts"]["done"], 4, "{burst:#}");
    assert!(
        burst["reasons"]
            .to_string()
            .contains("send z-fresh.txt: saved during this run"),
        "the run does not say why it sent a file it had not planned: {burst:#}"
    );
}

#[test]
fn issue_19_a_save_during_a_long_run_goes_into_its_next_batch_resident() {
    let env = TestEnv::new();
    let step = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/steps/resident.py");
    let command = serde_json::to_string(&[
        "python3".to_owned(),
        step.display().to_string(),
        env.log_dir().display().to_string(),
    ])
    .unwrap();
    rules(&env, &command, "resident = true");
    let w = env.watch(&[], &[]);
    let batches = || -> Vec<String> {
        std::fs::read_to_string(env.log_dir().join("batches.jsonl"))
            .unwrap_or_default()
            .lines()
            .flat_map(|l| {
                let batch: Value = serde_json::from_str(l).unwrap();
                let files: Vec<String> = batch["files"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|f| f.as_str().unwrap().to_owned())
                    .collect();
                names(files.iter().map(Path::new))
            })
            .collect()
    };
    save_during_a_run(&env, &w, &|| batches().contains(&"a-SLOW.txt".to_owned()));
    wait_until("every file is served", DEADLINE, &|| w.log(), || {
        batches().len() >= 4
    });
    assert_eq!(
        batches(),
        ["a-SLOW.txt", "z-fresh.txt", "b.txt", "c.txt"],
        "the save waited behind the batches planned before it\n--- log\n{}",
        w.log()
    );
    settled_with_one_send(&env, &w);
    assert_eq!(batches().len(), 4, "a file was sent twice: {:?}", batches());
}

#[test]
fn issue_19_a_save_during_the_last_batch_goes_in_the_same_run_not_a_debounce_later() {
    let env = TestEnv::new();
    let release = release_file(&env).display().to_string();
    let command = env.step_argv(&["--hold-on", "SLOW", &release, "--"]);
    // A long debounce: a run of its own for the save would come a second later.
    env.raw_rules(&format!(
        "debounce = \"1s\"\ntick = \"1h\"\n\
         [actions.ingest]\ncommand = {command}\nsettle = \"0s\"\n\
         [[rules]]\nname = \"memories\"\nin = \"data\"\npaths = [\"**/*.txt\"]\nrun = [\"ingest\"]\n"
    ));
    let w = env.watch(&[], &[]);
    env.write("Data/a-SLOW.txt", "SLOW");
    let sent = || {
        names(
            env.sent()
                .iter()
                .map(|a| Path::new(std::ffi::OsStr::new(std::str::from_utf8(a).unwrap()))),
        )
    };
    wait_until("the only batch is in flight", DEADLINE, &|| w.log(), || {
        sent().contains(&"a-SLOW.txt".to_owned())
    });
    env.write("Data/z-fresh.txt", "fresh");
    wait_until(
        "the watcher hands the save over",
        DEADLINE,
        &|| w.log(),
        || w.log().contains("z-fresh.txt: saved while ingest runs"),
    );
    std::fs::write(release_file(&env), "").unwrap();
    let reports = settled_with_one_send(&env, &w);
    let run = &reports[reports.len() - 2];
    assert_eq!(sent(), ["a-SLOW.txt", "z-fresh.txt"]);
    assert_eq!(
        (
            run["counts"]["done"].as_u64(),
            run["counts"]["fresh"].as_u64()
        ),
        (Some(2), Some(1)),
        "the save was not sent by the run it was heard during: {run:#}"
    );
    assert!(
        run["reasons"]
            .to_string()
            .contains("sent once its last batch was done"),
        "{run:#}"
    );
}
