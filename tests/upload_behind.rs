//! Work a run creates runs in that run (issue 19): the index ingest writes goes up right
//! behind it in the same run, not after a second debounce; a burst of files on stdin goes to
//! the step in one load, not in batches of 64; an upload `set` goes up in its stated order.

use std::time::Duration;

use serde_json::Value;

use crate::util::*;

const DEADLINE: Duration = Duration::from_secs(30);

/// An ingest step as the pipelines' are: for each file it writes index/<stem>.json through
/// a temporary file and a rename, and logs when it renamed (seconds since the epoch).
const INDEXING_STEP: &str = r#"
import json, os, sys, time
os.makedirs("index", exist_ok=True)
for path in sys.argv[1:]:
    stem = os.path.splitext(os.path.basename(path))[0]
    with open(f"index/{stem}.json.part", "w") as f:
        json.dump({"path": path, "text": open(path).read()}, f)
    os.replace(f"index/{stem}.json.part", f"index/{stem}.json")
    with open("renames.jsonl", "a") as log:
        log.write(json.dumps({"index": stem, "t": time.time()}) + "\n")
"#;

/// The home's rules: that ingest step on data files, the recording step as upload with
/// `index/*.json` as its sources, `extra` for the upload table.
fn indexing_rules(env: &TestEnv, debounce: &str, extra: &str) {
    env.write("ingest_index.py", INDEXING_STEP);
    std::fs::create_dir_all(env.home().join("index")).unwrap();
    let upload = env.step_argv_raw(&["--tag", "upload", "--", "{path}"]);
    env.raw_rules(&format!(
        "debounce = \"{debounce}\"\ntick = \"1h\"\n\
         [actions.ingest]\ncommand = [\"python3\", \"ingest_index.py\", \"{{files}}\"]\nsettle = \"0s\"\n\
         [actions.upload]\ncommand = {upload}\nremote = \"memory/{{relpath}}\"\nsources = [\"index/*.json\"]\n{extra}\
         [[rules]]\nname = \"memories\"\nin = \"data\"\npaths = [\"**/*.txt\"]\nrun = [\"ingest\"]\n"
    ));
}

/// The outcome of `name` in `run`, or "" when the run has no such action.
fn outcome<'a>(run: &'a Value, name: &str) -> &'a str {
    run["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["action"] == name)
        .map_or("", |a| a["outcome"].as_str().unwrap())
}

/// The files the upload step was called for, in call order.
fn uploaded(env: &TestEnv) -> Vec<String> {
    env.calls()
        .iter()
        .filter(|c| c.tag.as_deref() == Some("upload"))
        .map(|c| String::from_utf8_lossy(&c.args[0]).into_owned())
        .collect()
}

#[test]
fn issue_19_the_index_ingest_wrote_goes_up_in_the_same_run_not_after_a_second_debounce() {
    let env = TestEnv::new();
    indexing_rules(&env, "500ms", "");
    let w = env.watch(&[], &[]);
    for name in ["a", "b"] {
        env.write(&format!("Data/{name}.txt"), &format!("memory {name}"));
        wait_until("the index is uploaded", DEADLINE, &|| w.log(), || {
            uploaded(&env)
                .iter()
                .any(|p| p.ends_with(&format!("index/{name}.json")))
        });
        wait_until("its run is recorded", DEADLINE, &|| w.log(), || {
            env.runs().iter().any(|r| {
                r["trigger"] == "event"
                    && outcome(r, "upload") == "ran"
                    && r["woken_by"].to_string().contains(&format!("{name}.txt"))
            })
        });
    }
    let runs = env.runs();
    let event_runs: Vec<&Value> = runs.iter().filter(|r| r["trigger"] == "event").collect();
    for name in ["a", "b"] {
        let run = event_runs
            .iter()
            .find(|r| r["woken_by"].to_string().contains(&format!("{name}.txt")))
            .unwrap();
        assert_eq!(
            (outcome(run, "ingest"), outcome(run, "upload")),
            ("ran", "ran"),
            "the index of {name}.txt went up in a run of its own: {run:#}"
        );
        assert_eq!(action(run, "upload")["counts"]["uploaded"], 1, "{run:#}");
    }
    // Every index went up once, each in the run that wrote it: the events of its rename
    // started no run that uploaded it again.
    assert_eq!(uploaded(&env).len(), 2, "{:#?}", uploaded(&env));
    for run in &event_runs {
        assert_ne!(
            (outcome(run, "ingest"), outcome(run, "upload")),
            ("", "ran"),
            "an upload run of its own: {run:#}"
        );
    }
}

#[test]
fn issue_19_an_ingest_run_that_ran_no_step_runs_no_upload() {
    let env = TestEnv::new();
    indexing_rules(&env, "100ms", "");
    let w = env.watch(&[], &[]);
    env.write("Data/a.txt", "same");
    wait_until("a's index is uploaded", DEADLINE, &|| w.log(), || {
        uploaded(&env).len() == 1
    });
    wait_until("its run is recorded", DEADLINE, &|| w.log(), || {
        env.runs().iter().any(|r| outcome(r, "upload") == "ran")
    });
    // Saved again with the same content: ingest records the new stat and runs no step, so
    // no index changed and nothing follows it.
    let before = env.runs().len();
    env.write("Data/a.txt", "same");
    let recorded =
        |r: &Value| r["trigger"] == "event" && r["actions"].to_string().contains("known content");
    wait_until(
        "the second save's run is recorded",
        DEADLINE,
        &|| w.log(),
        || env.runs()[before..].iter().any(recorded),
    );
    let run = env.runs()[before..]
        .iter()
        .find(|r| recorded(r))
        .cloned()
        .unwrap();
    assert_eq!(action(&run, "ingest")["counts"]["batches"], 0, "{run:#}");
    assert_eq!(
        outcome(&run, "upload"),
        "",
        "upload ran behind an ingest that ran no step: {run:#}"
    );
    assert_eq!(run["modes"], serde_json::json!(["ingest"]), "{run:#}");
    assert_eq!(uploaded(&env).len(), 1);
}

#[test]
fn issue_19_a_burst_on_stdin_goes_to_the_step_in_one_call_without_batch_size() {
    let env = TestEnv::new();
    env.rules(&[], "pass_files = \"stdin-nul\"\n");
    let n = 2000;
    for i in 0..n {
        env.data_file(format!("import/{i:04}.txt"), &format!("memory {i}"));
    }
    let out = env.run(&["--once", "--mode", "ingest", "--json"]);
    assert_exit(&out, 0);
    let record = run_record(&out);
    let ingest = action(&record, "ingest");
    assert_eq!(ingest["counts"]["done"], n, "{ingest:#}");
    let calls = env.calls();
    let names: Vec<usize> = calls
        .iter()
        .map(|c| c.stdin.split(|b| *b == 0).filter(|n| !n.is_empty()).count())
        .collect();
    assert_eq!(names, vec![n], "one step call carrying every file");
}

/// An upload step that logs each path it is given, in call order, to uploads.log, and
/// fails on a path holding "faiss" while the file `drive-down` exists.
const ORDERED_UPLOAD: &str = r#"
import os, sys
path = sys.argv[1]
with open("uploads.log", "a") as log:
    log.write(os.path.relpath(path) + "\n")
if "faiss" in path and os.path.exists("drive-down"):
    sys.exit("the drive refused " + path)
"#;

/// The files the ordered upload step was called for, relative to the home, in call order.
fn upload_order(env: &TestEnv) -> Vec<String> {
    std::fs::read_to_string(env.home().join("uploads.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn issue_19_an_upload_set_goes_up_in_its_stated_order_and_waits_whole_when_one_fails() {
    let env = TestEnv::new();
    env.write("upload.py", ORDERED_UPLOAD);
    env.raw_rules(
        "[actions.upload]\ncommand = [\"python3\", \"upload.py\", \"{path}\"]\n\
         sources = [\"notes/*.md\"]\n\
         set = [\"index/*.faiss\", \"index/*.json\"]\n",
    );
    // The side-car sorts before the index by name; the set says the index goes first.
    env.write("index/docstore.json", "{\"ids\": [1]}");
    env.write("index/memory.faiss", "vectors 1");
    env.write("notes/a.md", "a note");
    let out = env.run(&["--once", "--mode", "upload", "--json"]);
    assert_exit(&out, 0);
    assert_eq!(
        upload_order(&env),
        ["notes/a.md", "index/memory.faiss", "index/docstore.json"],
        "every other file first, then the set in its order, the side-car last"
    );
    // Both change; the drive refuses the index: its side-car waits with it, so the drive
    // never holds a new side-car beside an old index.
    std::fs::remove_file(env.home().join("uploads.log")).unwrap();
    env.write("index/docstore.json", "{\"ids\": [1, 2]}");
    env.write("index/memory.faiss", "vectors 1 2");
    env.write("drive-down", "");
    let out = env.run(&["--once", "--mode", "upload", "--json"]);
    let record = run_record(&out);
    let upload = action(&record, "upload");
    assert_eq!(upload_order(&env), ["index/memory.faiss"], "{upload:#}");
    assert_eq!(upload["counts"]["held_back"], 1, "{upload:#}");
    let log = env.state_json("upload_log.json");
    let status = |p: &str| {
        log["uploads"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["path"] == p)
            .map(|e| e["status"].clone())
            .unwrap()
    };
    assert_eq!(status("index/docstore.json"), "pending", "{log:#}");
    assert_eq!(status("index/memory.faiss"), "failed", "{log:#}");
    // The drive is back, but the index waits for its backoff: the side-car, due at once
    // as a pending entry, waits with it rather than go up alone.
    std::fs::remove_file(env.home().join("drive-down")).unwrap();
    let out = env.run(&["--once", "--mode", "upload", "--json"]);
    let record = run_record(&out);
    let upload = action(&record, "upload");
    assert_eq!(upload_order(&env), ["index/memory.faiss"], "{upload:#}");
    assert_eq!(upload["counts"]["held_back"], 1, "{upload:#}");
}
