//! Hostile probes of fresh saves first and upload `min_interval` (issue 19): a signal
//! that lands while a run sends the saves it heard, and an upload_log.json written by
//! another script with an `uploaded_at` ahead of the clock. Through the real binary; the
//! step double holds each file's batch in flight while a marker named after the file
//! exists, so what happens meanwhile needs no race.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use crate::util::*;

const DEADLINE: Duration = Duration::from_secs(30);

/// A one-shot ingest step that appends the name of each file it is given to `sent.log`,
/// then stays in flight while `holds/<name>` exists for any of them (at most a minute).
const HOLDING_STEP: &str = r#"
import os, sys, time
log, holds, files = sys.argv[1], sys.argv[2], sys.argv[3:]
with open(log, "a") as f:
    for p in files:
        f.write(os.path.basename(p) + "\n")
deadline = time.monotonic() + 60
for p in files:
    hold = os.path.join(holds, os.path.basename(p))
    while os.path.exists(hold) and time.monotonic() < deadline:
        time.sleep(0.01)
"#;

/// The holding step as ingest (one file per batch), a data rule for every .txt; returns
/// the folder whose markers hold files.
fn holding_rules(env: &TestEnv) -> PathBuf {
    holding_rules_with(env, "batch_size = 1")
}

/// [`holding_rules`] with `extra` lines in `[actions.ingest]`.
fn holding_rules_with(env: &TestEnv, extra: &str) -> PathBuf {
    let step = env.write("holding_step.py", HOLDING_STEP);
    let holds = env.home().join("holds");
    std::fs::create_dir_all(&holds).unwrap();
    let command = serde_json::to_string(&[
        "python3".to_owned(),
        step.display().to_string(),
        env.log_dir().join("sent.log").display().to_string(),
        holds.display().to_string(),
        "{files}".to_owned(),
    ])
    .unwrap();
    std::fs::create_dir_all(env.log_dir()).unwrap();
    env.raw_rules(&format!(
        "debounce = \"100ms\"\ntick = \"1h\"\n\
         [actions.ingest]\ncommand = {command}\nsettle = \"0s\"\n{extra}\n\
         [[rules]]\nname = \"memories\"\nin = \"data\"\npaths = [\"**/*.txt\"]\nrun = [\"ingest\"]\n"
    ));
    holds
}

/// The names the holding step was given, in order.
fn sent(env: &TestEnv) -> Vec<String> {
    std::fs::read_to_string(env.log_dir().join("sent.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn hold(holds: &std::path::Path, name: &str) {
    std::fs::write(holds.join(name), "").unwrap();
}

fn release(holds: &std::path::Path, name: &str) {
    std::fs::remove_file(holds.join(name)).unwrap();
}

/// The keys ingest_hash.json (with its journal folded by a `--once`) holds.
fn recorded(env: &TestEnv) -> Value {
    env.state_json("ingest_hash.json")
}

#[test]
fn issue_19_a_signal_during_the_saves_sent_after_the_last_batch_is_a_stopped_run_that_says_what_it_left()
 {
    let env = TestEnv::new();
    let holds = holding_rules(&env);
    hold(&holds, "a.txt");
    hold(&holds, "f1.txt");
    let mut w = env.watch(&[], &[]);
    env.write("Data/a.txt", "alpha");
    wait_until(
        "the planned batch is in flight",
        DEADLINE,
        &|| w.log(),
        || sent(&env) == ["a.txt"],
    );
    env.write("Data/f1.txt", "fresh one");
    env.write("Data/f2.txt", "fresh two");
    wait_until(
        "the watcher hands both saves to the run",
        DEADLINE,
        &|| w.log(),
        || {
            let log = w.log();
            log.contains("f1.txt: saved while ingest runs")
                && log.contains("f2.txt: saved while ingest runs")
        },
    );
    release(&holds, "a.txt");
    wait_until(
        "the first save is in flight, after the last planned batch",
        DEADLINE,
        &|| w.log(),
        || sent(&env).len() == 2,
    );
    assert_eq!(sent(&env), ["a.txt", "f1.txt"]);
    let pid = nix::unistd::Pid::from_raw(i32::try_from(w.pid()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    wait_until(
        "the watcher takes the signal while the save is in flight",
        DEADLINE,
        &|| w.log(),
        || w.log().contains("SIGTERM: stopping after"),
    );
    release(&holds, "f1.txt");
    w.wait_exit(DEADLINE).expect("the watcher exits");
    assert_eq!(
        sent(&env),
        ["a.txt", "f1.txt"],
        "a step started after SIGTERM"
    );

    let run = env.runs().last().cloned().unwrap();
    let ingest = action(&run, "ingest").clone();
    let summary = ingest["summary"].as_str().unwrap_or_default().to_owned();
    assert_eq!(
        ingest["outcome"], "interrupted",
        "a run that left a save unsent is not recorded as stopped: {ingest:#}"
    );
    assert!(
        summary.contains("stopped by a signal")
            && summary.contains("the other 1 file is sent next run"),
        "the summary does not say what the signal left: {summary}"
    );
    let reasons = ingest["reasons"].to_string();
    assert!(
        !reasons.contains("send f2.txt"),
        "the run says it sent a file it never sent: {ingest:#}"
    );
    let counts = &ingest["counts"];
    assert_eq!(
        (counts["done"].as_u64(), counts["fresh"].as_u64()),
        (Some(2), Some(2)),
        "{ingest:#}"
    );
    assert!(
        summary.contains("sent 2 of 3 files"),
        "the counts do not add up: {summary}"
    );

    // Nothing lost: the next run sends what the signal left.
    let out = env.run(&["--once"]);
    assert_exit(&out, 0);
    assert_eq!(sent(&env), ["a.txt", "f1.txt", "f2.txt"]);
    let hashes = recorded(&env).to_string();
    assert!(hashes.contains("f2.txt"), "{hashes}");
}

/// Appends the uploaded file's content, one line per upload, to uploads.log in the home.
const UPLOAD: &str =
    r#"["sh", "-c", "cat \"$1\" >> uploads.log && echo >> uploads.log", "upload", "{path}"]"#;

/// The contents that went up, oldest first.
fn went_up(env: &TestEnv) -> Vec<String> {
    std::fs::read_to_string(env.home().join("uploads.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn upload_once(env: &TestEnv) -> Value {
    let out = env.run(&["--once", "--mode", "upload", "--json"]);
    assert_exit(&out, 0);
    action(&run_record(&out), "upload").clone()
}

#[test]
fn issue_19_an_uploaded_at_ahead_of_the_clock_holds_no_upload_past_min_interval() {
    let env = TestEnv::new();
    std::fs::create_dir_all(env.home().join("index")).unwrap();
    env.raw_rules(&format!(
        "[actions.upload]\ncommand = {UPLOAD}\nremote = \"memory/{{relpath}}\"\nsources = [\"index/*.json\"]\nmin_interval = \"1h\"\n"
    ));
    env.write("index/a.json", "v1");
    assert_eq!(upload_once(&env)["counts"]["uploaded"], 1);
    // Another script (or a clock set back since) stamped the upload years ahead.
    let mut log = env.state_json("upload_log.json");
    for e in log["uploads"].as_array_mut().unwrap() {
        e["uploaded_at"] = json!("2099-01-01T00:00:00.000Z");
    }
    env.state_file("upload_log.json", &log);
    env.write("index/a.json", "v2 longer");
    let run = upload_once(&env);
    assert_eq!(
        went_up(&env),
        ["v1", "v2 longer"],
        "an uploaded_at ahead of the clock held the upload until then, not min_interval: {run:#}"
    );
    assert!(
        run["reasons"].to_string().contains("ahead of the clock"),
        "the run does not say why it did not wait: {run:#}"
    );
    // The stamp it wrote now anchors the interval again: the next change waits.
    env.write("index/a.json", "v3 longer still");
    let held = upload_once(&env);
    assert_eq!(held["counts"]["coalesced"], 1, "{held:#}");
    assert_eq!(went_up(&env), ["v1", "v2 longer"]);
}

/// Rules: upload index/*.json into `drive/` in the home with `min_interval`, deleting the
/// drive's copy of a gone source.
fn drive_rules(env: &TestEnv, min_interval: &str) {
    std::fs::create_dir_all(env.home().join("index")).unwrap();
    env.raw_rules(&format!(
        "[actions.upload]\n\
         command = [\"sh\", \"-c\", \"mkdir -p \\\"$(dirname \\\"$2\\\")\\\" && cp \\\"$1\\\" \\\"$2\\\"\", \"up\", \"{{path}}\", \"{{remote}}\"]\n\
         remove = [\"rm\", \"{{remote}}\"]\n\
         remote = \"drive/{{relpath}}\"\nsources = [\"index/*.json\"]\nmin_interval = \"{min_interval}\"\n"
    ));
}

#[test]
fn issue_19_a_source_deleted_while_it_waits_out_min_interval_is_removed_from_the_remote() {
    let env = TestEnv::new();
    drive_rules(&env, "1h");
    env.write("index/a.json", "v1");
    env.write("index/b.json", "b");
    assert_eq!(upload_once(&env)["counts"]["uploaded"], 2);
    let copy = env.home().join("drive/index/a.json");
    assert_eq!(std::fs::read_to_string(&copy).unwrap(), "v1");
    env.write("index/a.json", "v2");
    assert_eq!(upload_once(&env)["counts"]["coalesced"], 1);
    std::fs::remove_file(env.home().join("index/a.json")).unwrap();
    let run = upload_once(&env);
    assert!(
        !copy.exists(),
        "the drive keeps the copy of a source deleted while it waited for min_interval: {run:#}"
    );
    let log = env.state_json("upload_log.json");
    let entry = log["uploads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == "index/a.json")
        .cloned()
        .unwrap();
    assert_eq!(entry["status"], "removed", "{entry:#}");
    // Nothing left to do: the removal is not tried again.
    let again = upload_once(&env);
    assert_eq!(again["outcome"], "nothing-to-do", "{again:#}");
}

#[test]
fn issue_19_a_save_heard_while_the_pause_marker_exists_waits_for_the_resume_not_the_run_under_way()
{
    let env = TestEnv::new();
    let holds = holding_rules(&env);
    hold(&holds, "a.txt");
    let w = env.watch(&[], &[]);
    env.write("Data/a.txt", "alpha");
    wait_until(
        "the planned batch is in flight",
        DEADLINE,
        &|| w.log(),
        || sent(&env) == ["a.txt"],
    );
    // A bulk import begins: the user pauses runs first, as the README says to.
    env.write("Data/.memsched-pause", "");
    wait_until("the watcher pauses", DEADLINE, &|| w.log(), || {
        w.log().contains("exists: runs wait until it is removed")
    });
    env.write("Data/imported.txt", "half of an import");
    wait_until(
        "the watcher hears the import",
        DEADLINE,
        &|| w.log(),
        || {
            w.log().contains("deferred while paused: ingest for")
                && w.log().contains("imported.txt")
        },
    );
    release(&holds, "a.txt");
    wait_until(
        "the run under way is recorded",
        DEADLINE,
        &|| w.log(),
        || env.runs().len() >= 2,
    );
    assert_eq!(
        sent(&env),
        ["a.txt"],
        "a file saved while runs were paused was sent by the run under way\n--- log\n{}",
        w.log()
    );
    // Removing the marker resumes: nothing was lost.
    std::fs::remove_file(env.data().join(".memsched-pause")).unwrap();
    wait_until("the resume sends the import", DEADLINE, &|| w.log(), || {
        sent(&env) == ["a.txt", "imported.txt"]
    });
}

#[test]
fn issue_19_a_copy_saved_anew_while_its_original_is_queued_is_sent_once_with_skip_known_content() {
    let env = TestEnv::new();
    let holds = holding_rules_with(&env, "batch_size = 1\nskip_known_content = true");
    hold(&holds, "a.txt");
    let w = env.watch(&[], &[]);
    // One burst: b.txt goes to the step, c.txt (its copy) is recorded once b.txt is in.
    env.write("Data/b.txt", "same words");
    env.write("Data/c.txt", "same words");
    env.write("Data/a.txt", "alpha");
    wait_until(
        "the first batch is in flight",
        DEADLINE,
        &|| w.log(),
        || sent(&env) == ["a.txt"],
    );
    env.write("Data/c.txt", "other words now");
    wait_until(
        "the watcher hands the save to the run",
        DEADLINE,
        &|| w.log(),
        || w.log().contains("c.txt: saved while ingest runs"),
    );
    release(&holds, "a.txt");
    wait_until(
        "the run the save brings after the burst's is recorded",
        DEADLINE,
        &|| w.log(),
        || env.runs().len() >= 3,
    );
    assert_eq!(
        sent(&env),
        ["a.txt", "c.txt", "b.txt"],
        "the copy's new content was sent twice: its original's batch recorded the old content over it\n--- log\n{}",
        w.log()
    );
    let last = env.runs().last().cloned().unwrap();
    assert_eq!(
        action(&last, "ingest")["outcome"],
        "nothing-to-do",
        "{last:#}"
    );
}

/// The names of the files the resident step double was served, batch by batch.
fn served(env: &TestEnv) -> Vec<String> {
    std::fs::read_to_string(env.log_dir().join("batches.jsonl"))
        .unwrap_or_default()
        .lines()
        .flat_map(|l| {
            let batch: Value = serde_json::from_str(l).unwrap();
            batch["files"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|f| {
                    let f = f.as_str().unwrap().to_owned();
                    f.rsplit('/').next().unwrap().to_owned()
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The ingest task of `file`, if any.
fn task_of(env: &TestEnv, file: &str) -> Option<Value> {
    env.state_json("task_queue.json")["tasks"]
        .as_array()?
        .iter()
        .find(|t| t["file"] == file)
        .cloned()
}

/// Writes `slow` (a file the resident double holds until LOGDIR/release), waits until it
/// is in flight, saves `file` with `text`, waits until the watcher hands it to the run
/// (its `nth` hand-over), then lets the held batch end.
fn save_while_held(env: &TestEnv, w: &Watcher, slow: &str, file: &str, text: &str, nth: usize) {
    let release = env.log_dir().join("release");
    let _ = std::fs::remove_file(&release);
    env.write(&format!("Data/{slow}"), "SLOW");
    wait_until("the held batch is in flight", DEADLINE, &|| w.log(), || {
        served(env).contains(&slow.to_owned())
    });
    env.write(&format!("Data/{file}"), text);
    let handed = format!("{file}: saved while ingest runs");
    wait_until(
        "the watcher hands the save over",
        DEADLINE,
        &|| w.log(),
        || w.log().matches(&handed).count() >= nth,
    );
    std::fs::write(&release, "").unwrap();
}

#[test]
fn issue_19_a_fresh_save_the_step_fails_is_one_task_and_its_fix_saved_during_a_run_closes_it() {
    let env = TestEnv::new();
    let step = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/steps/resident.py");
    let command = serde_json::to_string(&[
        "python3".to_owned(),
        step.display().to_string(),
        env.log_dir().display().to_string(),
    ])
    .unwrap();
    env.raw_rules(&format!(
        "debounce = \"100ms\"\ntick = \"1h\"\n\
         [actions.ingest]\ncommand = {command}\nsettle = \"0s\"\nbatch_size = 1\nresident = true\n\
         [[rules]]\nname = \"memories\"\nin = \"data\"\npaths = [\"**/*.txt\"]\nrun = [\"ingest\"]\n"
    ));
    let w = env.watch(&[], &[]);
    save_while_held(&env, &w, "a-SLOW.txt", "z.txt", "FAIL", 1);
    wait_until(
        "the run the save brings next is recorded",
        DEADLINE,
        &|| w.log(),
        || env.runs().len() >= 3,
    );
    assert_eq!(served(&env), ["a-SLOW.txt", "z.txt"], "{}", w.log());
    let task = task_of(&env, "z.txt").expect("a failed fresh save is a task");
    assert_eq!(
        (task["status"].as_str(), task["attempts"].as_u64()),
        (Some("failed"), Some(1)),
        "{task:#}"
    );
    let next = env.runs().last().cloned().unwrap();
    assert!(
        action(&next, "ingest")["reasons"]
            .to_string()
            .contains("leave z.txt: failed before"),
        "the next run sent the failed save again, or did not say why not: {next:#}"
    );

    // Fixed while another long run is under way: it goes in that run, closing its task.
    save_while_held(&env, &w, "b-SLOW.txt", "z.txt", "fixed now", 2);
    wait_until(
        "the run the fix brings next is recorded",
        DEADLINE,
        &|| w.log(),
        || env.runs().len() >= 5,
    );
    assert_eq!(
        served(&env),
        ["a-SLOW.txt", "z.txt", "b-SLOW.txt", "z.txt"],
        "{}",
        w.log()
    );
    let task = task_of(&env, "z.txt").unwrap();
    assert_eq!(task["status"], "done", "{task:#}");
    let last = env.runs().last().cloned().unwrap();
    assert_eq!(
        action(&last, "ingest")["outcome"],
        "nothing-to-do",
        "{last:#}"
    );
}

#[test]
fn issue_19_a_storm_of_saves_during_a_long_run_ends_with_every_file_recorded_each_sent_once() {
    let env = TestEnv::new();
    let holds = holding_rules_with(&env, "batch_size = 50");
    hold(&holds, "a.txt");
    let w = env.watch(&[], &[]);
    let mut burst = vec!["a.txt".to_owned()];
    env.write("Data/a.txt", "alpha");
    for i in 0..149 {
        let name = format!("q{i:03}.txt");
        env.write(&format!("Data/{name}"), &format!("queued {i}"));
        burst.push(name);
    }
    wait_until(
        "the first batch is in flight",
        DEADLINE,
        &|| w.log(),
        || sent(&env).first().is_some_and(|f| f == "a.txt"),
    );
    let mut storm = Vec::new();
    for i in 0..2000 {
        let name = format!("s{i:04}.txt");
        env.write(&format!("Data/{name}"), &format!("storm {i}"));
        storm.push(name);
    }
    // Files the run still has queued, saved anew: their batch sends the new content.
    for i in 100..149 {
        env.write(
            &format!("Data/q{i:03}.txt"),
            &format!("queued {i}, saved again"),
        );
    }
    release(&holds, "a.txt");
    let all: std::collections::BTreeSet<String> = burst.iter().chain(&storm).cloned().collect();
    wait_until(
        "every file is sent and a run finds nothing left",
        Duration::from_secs(120),
        &|| w.log(),
        || {
            let got: std::collections::BTreeSet<String> = sent(&env).into_iter().collect();
            let runs = env.runs();
            got == all
                && runs.len() >= 3
                && action(runs.last().unwrap(), "ingest")["outcome"] == "nothing-to-do"
        },
    );
    let sent = sent(&env);
    let mut twice: Vec<&String> = sent
        .iter()
        .filter(|n| sent.iter().filter(|m| m == n).count() > 1)
        .collect();
    twice.dedup();
    assert!(
        twice.is_empty(),
        "sent more than once: {:?}",
        &twice[..twice.len().min(20)]
    );
}

#[test]
fn issue_19_a_copy_of_content_its_original_lost_before_its_batch_is_not_recorded_as_indexed() {
    let env = TestEnv::new();
    let holds = holding_rules_with(&env, "batch_size = 1\nskip_known_content = true");
    hold(&holds, "a.txt");
    let w = env.watch(&[], &[]);
    // b.txt goes to the step; c.txt, its copy, is to be recorded once b.txt is in.
    env.write("Data/b.txt", "same words");
    env.write("Data/c.txt", "same words");
    env.write("Data/a.txt", "alpha");
    wait_until(
        "the first batch is in flight",
        DEADLINE,
        &|| w.log(),
        || sent(&env) == ["a.txt"],
    );
    // The original changes before its batch: the step reads the new words, never the old.
    env.write("Data/b.txt", "other words now");
    wait_until(
        "the watcher hands the save to the run",
        DEADLINE,
        &|| w.log(),
        || w.log().contains("b.txt: saved while ingest runs"),
    );
    release(&holds, "a.txt");
    wait_until(
        "the run the save brings next is recorded",
        DEADLINE,
        &|| w.log(),
        || env.runs().len() >= 3,
    );
    assert_eq!(sent(&env), ["a.txt", "b.txt"], "{}", w.log());
    let burst = action(&env.runs()[1], "ingest").clone();
    assert!(
        burst["reasons"].to_string().contains("not recorded c.txt"),
        "c.txt was recorded as indexed under content no file sent to the step held: {burst:#}"
    );
    let next = env.runs().last().cloned().unwrap();
    assert_eq!(
        action(&next, "ingest")["outcome"],
        "nothing-to-do",
        "b.txt was sent twice: its batch recorded the content the plan read, not the one it sent: {next:#}"
    );
    // The next full walk sends the copy as itself: nothing lost.
    drop(w);
    let out = env.run(&["--once"]);
    assert_exit(&out, 0);
    assert_eq!(sent(&env), ["a.txt", "b.txt", "c.txt"]);
}

#[test]
fn issue_19_a_side_car_whose_interval_ended_waits_for_its_index_still_within_min_interval() {
    let env = TestEnv::new();
    std::fs::create_dir_all(env.home().join("index")).unwrap();
    env.raw_rules(&format!(
        "[actions.upload]\ncommand = {UPLOAD}\nremote = \"memory/{{relpath}}\"\n\
         sources = [\"index/*.faiss\", \"index/*.json\"]\nset = [\"index/*.faiss\", \"index/*.json\"]\nmin_interval = \"1h\"\n"
    ));
    env.write("index/m.faiss", "index v1");
    env.write("index/m.json", "side-car v1");
    assert_eq!(upload_once(&env)["counts"]["uploaded"], 2);
    // The side-car went up long ago (another script's log), the index just now.
    let mut log = env.state_json("upload_log.json");
    for e in log["uploads"].as_array_mut().unwrap() {
        if e["path"] == "index/m.json" {
            e["uploaded_at"] = json!("2020-01-01T00:00:00.000Z");
        }
    }
    env.state_file("upload_log.json", &log);
    env.write("index/m.faiss", "index v2");
    env.write("index/m.json", "side-car v2");
    let run = upload_once(&env);
    assert_eq!(
        went_up(&env),
        ["index v1", "side-car v1"],
        "the side-car went up beside an index that waits for min_interval: {run:#}"
    );
    assert_eq!(run["counts"]["coalesced"], 2, "{run:#}");
    assert!(
        run["reasons"]
            .to_string()
            .contains("wait index/m.json: another file of its set"),
        "{run:#}"
    );
}

#[test]
fn issue_19_an_index_whose_interval_ended_waits_for_its_side_car_within_min_interval() {
    let env = TestEnv::new();
    std::fs::create_dir_all(env.home().join("index")).unwrap();
    env.raw_rules(&format!(
        "[actions.upload]\ncommand = {UPLOAD}\nremote = \"memory/{{relpath}}\"\n\
         sources = [\"index/*.faiss\", \"index/*.json\"]\nset = [\"index/*.faiss\", \"index/*.json\"]\nmin_interval = \"1h\"\n"
    ));
    env.write("index/m.faiss", "index v1");
    env.write("index/m.json", "side-car v1");
    assert_eq!(upload_once(&env)["counts"]["uploaded"], 2);
    // The index went up long ago; the side-car (changed alone since) just now.
    let mut log = env.state_json("upload_log.json");
    for e in log["uploads"].as_array_mut().unwrap() {
        if e["path"] == "index/m.faiss" {
            e["uploaded_at"] = json!("2020-01-01T00:00:00.000Z");
        }
    }
    env.state_file("upload_log.json", &log);
    env.write("index/m.faiss", "index v2");
    env.write("index/m.json", "side-car v2");
    let run = upload_once(&env);
    assert_eq!(
        went_up(&env),
        ["index v1", "side-car v1"],
        "the new index went up alone, beside the old side-car, for as long as the side-car's interval lasts: {run:#}"
    );
    assert!(
        run["reasons"].to_string().contains("wait index/m.faiss"),
        "the run does not say why the index waits: {run:#}"
    );
}
