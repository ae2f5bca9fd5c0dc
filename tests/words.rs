//! Numbers and words (issue 11): every noun agrees with its number, and signals have names.

use serde_json::json;

use crate::harness::Test;
use crate::util::*;

#[test]
fn issue_11_one_upload_is_one_file() {
    let env = TestEnv::new();
    let step = env.step_argv(&["--", "{path}"]);
    env.raw_rules(&format!(
        "[actions.upload]\ncommand = {step}\nremote = \"r:{{relpath}}\"\n"
    ));
    env.data_file("a.txt", "alpha");
    env.state_file(
        "upload_log.json",
        &json!({"uploads": [{"path": "Data/a.txt", "status": "pending", "attempts": 0}]}),
    );
    env.test()
        .args(&["--once", "--mode", "upload", "--dry-run"])
        .stdout_has("would upload 1 file (0 newly queued)")
        .run();
    env.test()
        .args(&["--once", "--mode", "upload"])
        .stdout_has("uploaded 1 of 1 file\n")
        .run();
}

#[test]
fn issue_11_status_counts_one_data_file_as_one_file() {
    Test::new()
        .rules(&["--"], "")
        .data("a.txt", "alpha")
        .args(&["status"])
        .stdout_has("  data       1 file, 1 not yet indexed\n")
        .run();
}

#[test]
fn issue_11_a_step_killed_by_a_signal_names_it() {
    let run = Test::new()
        .raw_rules(
            "[actions.ingest]\ncommand = [\"sh\", \"-c\", \"kill -KILL $$\", \"{files}\"]\nsettle = \"0s\"\n",
        )
        .data("a.txt", "alpha")
        .args(&["--once", "--mode", "ingest", "--json"])
        .status(1)
        .run();
    let ingest = run.action("ingest");
    assert!(
        ingest.to_string().contains("killed by SIGKILL"),
        "{ingest:#}"
    );
}
