//! State files: malformed ones are never overwritten, shapes and unknown fields survive,
//! the run log is bounded.

use pretty_assertions::assert_eq;

use crate::harness::Test;
use crate::util::*;

#[test]
fn a_malformed_ingest_hash_is_left_byte_for_byte_and_the_action_fails() {
    let env = TestEnv::new();
    env.rules(&["--"], "");
    env.data_file("a.txt", "a");
    let broken = "{\n  \"files\": {\n    \"a.txt\": {\"hash\": \"sha256:00\",}\n  }\n}\n";
    let path = env.write("state/ingest_hash.json", broken);

    env.test()
        .args(&["--once"])
        .status(1)
        .stdout_has("{home}/state/ingest_hash.json:3:35: state file does not parse, left untouched")
        .run();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), broken);
    assert!(env.calls().is_empty());
}

#[test]
fn a_malformed_task_queue_stops_ingest_before_it_runs_anything() {
    let env = TestEnv::new();
    env.rules(&["--"], "");
    env.data_file("a.txt", "a");
    let broken = "[{\"id\": \"x\"";
    let path = env.write("state/task_queue.json", broken);
    env.test()
        .args(&["--once"])
        .status(1)
        .stdout_has("task_queue.json:1:11")
        .run();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), broken);
    assert!(env.calls().is_empty());
}

#[test]
fn a_bare_list_task_queue_stays_a_list_and_keeps_unknown_fields() {
    let run = Test::new()
        .rules(&["--fail", "b", "--"], "")
        .write(
            "state/task_queue.json",
            r#"[{"id": "upload:1", "step": "upload", "status": "failed", "owner": {"script": "drive_upload.py"}}]"#,
        )
        .data("b.txt", "b")
        .args(&["--once"])
        .status(1)
        .run();
    let queue = run.env().state_json("task_queue.json");
    let tasks = queue.as_array().expect("the queue must stay a bare list");
    assert_eq!(tasks.len(), 2);
    assert_eq!(tasks[0]["owner"]["script"], "drive_upload.py");
    assert_eq!(tasks[1]["id"], "ingest:b.txt");
}

#[test]
fn unknown_fields_of_ingest_hash_survive_a_rewrite() {
    let run = Test::new()
        .rules(&["--"], "")
        .write(
            "state/ingest_hash.json",
            r#"{"version": 1, "note": "kept", "files": {"old.txt": {"hash": "sha256:ab", "chunks": 7}}}"#,
        )
        .data("old.txt", "changed content")
        .args(&["--once"])
        .run();
    let hashes = run.env().state_json("ingest_hash.json");
    assert_eq!(hashes["note"], "kept");
    assert_eq!(hashes["files"]["old.txt"]["chunks"], 7);
    assert_ne!(hashes["files"]["old.txt"]["hash"], "sha256:ab");
}

#[test]
fn the_run_log_holds_one_record_per_run_bounded_by_log_keep() {
    let env = TestEnv::new();
    env.rules(&["--exit", "2", "--"], "");
    let text = std::fs::read_to_string(env.home().join("watch-rules.toml")).unwrap();
    env.write("watch-rules.toml", &format!("log_keep = 2\n{text}"));
    for i in 0..3 {
        // A new file each time: the failed ones are left to the retry action.
        env.data_file(format!("f{i}.txt"), &format!("{i}"));
        env.test()
            .args(&["--once", "--mode", "ingest"])
            .status(1)
            .run();
    }
    let log = env.state_json("scheduler_log.json");
    let runs = log["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    let first = &runs[0];
    assert_eq!(first["trigger"], "manual");
    assert_eq!(first["modes"][0], "ingest");
    assert_eq!(first["exit_code"], 1);
    let ingest = &first["actions"][0];
    assert_eq!(ingest["action"], "ingest");
    assert_eq!(ingest["outcome"], "failed");
    assert_eq!(ingest["commands"][0]["exit_code"], 2);
    assert_eq!(
        ingest["commands"][0]["stderr_tail"][0],
        "record.py: exiting 2"
    );
    assert!(ingest["duration_ms"].is_u64());
}

#[test]
fn json_output_is_the_run_record() {
    let run = Test::new()
        .rules(&["--"], "")
        .data("a.txt", "a")
        .args(&["--once", "--json", "--trigger", "cron"])
        .run();
    let record = run.record();
    assert_eq!(record["trigger"], "cron");
    assert_eq!(record["exit_code"], 0);
    let logged = run.env().state_json("scheduler_log.json")["runs"][0].clone();
    assert_eq!(logged, record);
}

/// Issue 10 item 6: values memsched compares exactly survive a round trip through a
/// reader that holds numbers as doubles (jq, JavaScript): the stat cache's nanosecond
/// mtime is written as a string of digits, so a script that rewrites ingest_hash.json
/// with such a tool costs no re-read of any file.
#[test]
fn the_stat_cache_survives_a_round_trip_through_doubles() {
    let run = crate::harness::Test::new()
        .rules(&["--"], "")
        .data("a.txt", "alpha")
        .args(&["--once"])
        .run();
    let env = run.env();
    let manifest = env.state("ingest_hash.json");
    // What jq 1.6 does: every number through a double, integers printed as integers.
    let as_doubles = "import json, sys\n\
        p = sys.argv[1]\n\
        doc = json.load(open(p), parse_int=lambda s: int(float(s)))\n\
        json.dump(doc, open(p, 'w'))\n";
    let status = std::process::Command::new("python3")
        .args(["-c", as_doubles])
        .arg(&manifest)
        .status()
        .unwrap();
    assert!(status.success());
    let ingest = env
        .test()
        .args(&["--once", "--json"])
        .run()
        .action("ingest");
    assert_eq!(
        ingest["counts"]["hashed"],
        0,
        "the round trip cost a re-read: {}\n{ingest:#}",
        std::fs::read_to_string(&manifest).unwrap()
    );
}
