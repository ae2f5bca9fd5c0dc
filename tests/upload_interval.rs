//! `min_interval` (issue 19): a big index rewritten at every save goes up at most once per
//! interval, and the version that goes up is always the latest; the run that holds an
//! upload back says until when, and wakes for it. Through the real binary, with an upload
//! step that appends the file's content to a log (so what went up is known exactly).

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::*;

const DEADLINE: Duration = Duration::from_secs(30);

/// Appends the uploaded file's content, one line per upload, to uploads.log in the home.
const UPLOAD: &str =
    r#"["sh", "-c", "cat \"$1\" >> uploads.log && echo >> uploads.log", "upload", "{path}"]"#;

/// Rules: upload index/*.json with `min_interval`, and (for the watcher) no other action.
fn interval_rules(env: &TestEnv, min_interval: &str) {
    std::fs::create_dir_all(env.home().join("index")).unwrap();
    env.raw_rules(&format!(
        "debounce = \"100ms\"\ntick = \"1h\"\n\
         [actions.upload]\ncommand = {UPLOAD}\nremote = \"memory/{{relpath}}\"\nsources = [\"index/*.json\"]\nmin_interval = \"{min_interval}\"\n"
    ));
}

/// The contents that went up, oldest first.
fn went_up(env: &TestEnv) -> Vec<String> {
    std::fs::read_to_string(env.home().join("uploads.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The upload_log.json entry of `path`.
fn entry(env: &TestEnv, path: &str) -> Value {
    env.state_json("upload_log.json")["uploads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == path)
        .cloned()
        .unwrap_or(Value::Null)
}

fn upload_once(env: &TestEnv) -> Value {
    let out = env.run(&["--once", "--mode", "upload", "--json"]);
    assert_exit(&out, 0);
    action(&run_record(&out), "upload").clone()
}

#[test]
fn issue_19_a_changed_file_waits_out_min_interval_then_its_latest_version_goes_up() {
    let env = TestEnv::new();
    interval_rules(&env, "2s");
    env.write("index/a.json", "v1");
    let first = upload_once(&env);
    assert_eq!(first["counts"]["uploaded"], 1, "{first:#}");
    let uploaded_at = Instant::now();
    env.write("index/a.json", "v2 longer");
    env.write("index/a.json", "v3 longer still");
    let held = upload_once(&env);
    assert_eq!(
        went_up(&env),
        ["v1"],
        "min_interval did not hold the upload back"
    );
    assert_eq!(held["counts"]["coalesced"], 1, "{held:#}");
    assert!(
        held["reasons"].to_string().contains("min_interval"),
        "the run does not say why it waits: {held:#}"
    );
    assert!(
        held["details"]["next_due"].is_string(),
        "no wake-up for it: {held:#}"
    );
    assert_eq!(entry(&env, "index/a.json")["status"], "pending");
    // Once the interval is over, the latest version goes up, once.
    wait_until(
        "the interval ends and it goes up",
        DEADLINE,
        &String::new,
        || {
            upload_once(&env);
            went_up(&env).len() > 1
        },
    );
    assert!(
        uploaded_at.elapsed() >= Duration::from_secs(2),
        "it went up within min_interval"
    );
    assert_eq!(went_up(&env), ["v1", "v3 longer still"]);
    assert_eq!(entry(&env, "index/a.json")["status"], "uploaded");
}

#[test]
fn issue_19_the_watcher_coalesces_a_burst_of_index_writes_into_one_upload_of_the_last() {
    let env = TestEnv::new();
    interval_rules(&env, "1500ms");
    let w = env.watch(&[], &[]);
    env.write("index/a.json", "v1");
    wait_until("the first version goes up", DEADLINE, &|| w.log(), || {
        went_up(&env) == ["v1"]
    });
    let first_up = Instant::now();
    for version in ["v2 a", "v3 ab", "v4 abc"] {
        env.write("index/a.json", version);
    }
    wait_until(
        "the latest version goes up after the interval",
        DEADLINE,
        &|| w.log(),
        || went_up(&env).len() > 1,
    );
    assert!(
        first_up.elapsed() >= Duration::from_millis(1400),
        "it went up within min_interval: {:?}",
        first_up.elapsed()
    );
    wait_until("the entry is uploaded", DEADLINE, &|| w.log(), || {
        entry(&env, "index/a.json")["status"] == "uploaded"
    });
    assert_eq!(went_up(&env), ["v1", "v4 abc"], "{}", w.log());
}

#[test]
fn issue_19_min_interval_out_of_range_is_refused_naming_the_line() {
    let env = TestEnv::new();
    interval_rules(&env, "soon");
    let out = env.run(&["--once", "--mode", "upload"]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(
        err.contains("watch-rules.toml:") && err.contains("min_interval"),
        "{err}"
    );
}
