//! The upload action end to end, through rclone's local backend for real.

use pretty_assertions::assert_eq;
use serde_json::json;

use crate::util::*;

fn upload_rules(env: &TestEnv, command: &str, extra: &str) {
    env.raw_rules(&format!("[actions.upload]\ncommand = {command}\n{extra}"));
}

#[test]
fn rclone_uploads_pending_entries_through_its_local_backend() {
    let rclone = std::process::Command::new("rclone").arg("version").output();
    assert!(
        rclone.is_ok_and(|o| o.status.success()),
        "rclone is needed for this test: apt-get install rclone (.ci/run installs it)"
    );
    let env = TestEnv::new();
    let remote = env.home().join("remote drive");
    upload_rules(
        &env,
        r#"["rclone", "copyto", "--config", "/dev/null", "{path}", "{remote}"]"#,
        &format!("remote = \"{}/{{relpath}}\"\n", remote.display()),
    );
    env.data_file("notes/a b.txt", "to the cloud");
    env.state_file(
        "upload_log.json",
        &json!({"uploads": [{"path": "Data/notes/a b.txt", "status": "pending", "attempts": 0, "by": "drive_upload.py"}]}),
    );
    env.test().args(&["--once", "--mode", "upload"]).run();
    assert_eq!(
        std::fs::read_to_string(remote.join("Data/notes/a b.txt")).unwrap(),
        "to the cloud"
    );
    let entry = env.state_json("upload_log.json")["uploads"][0].clone();
    assert_eq!(entry["status"], "uploaded");
    assert_eq!(entry["attempts"], 1);
    assert_eq!(entry["by"], "drive_upload.py");
    assert_eq!(
        entry["remote"],
        format!("{}/Data/notes/a b.txt", remote.display())
    );
}

#[test]
fn a_failed_upload_backs_off_and_a_missing_file_is_skipped_for_good() {
    let env = TestEnv::new();
    upload_rules(
        &env,
        &env.step_argv_raw(&["--exit", "5", "--", "{path}", "{remote}"]),
        "remote = \"drive:{relpath}\"\n",
    );
    env.data_file("present.txt", "x");
    env.state_file(
        "upload_log.json",
        &json!([
            {"path": "Data/present.txt", "status": "failed", "attempts": 1},
            {"path": "Data/gone.txt", "status": "pending", "attempts": 0},
        ]),
    );
    env.test()
        .args(&["--once", "--mode", "upload"])
        .status(1)
        .run();
    let calls = env.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].args[0], bytes(&env.data().join("present.txt")));
    assert_eq!(calls[0].args[1], b"drive:Data/present.txt".to_vec());
    let log = env.state_json("upload_log.json");
    let entries = log.as_array().expect("the log stays a bare list");
    assert_eq!(entries[0]["status"], "failed");
    assert_eq!(entries[0]["attempts"], 2);
    assert!(entries[0]["next_attempt_at"].is_string());
    assert_eq!(entries[1]["status"], "skipped");
    assert!(
        entries[1]["error"]
            .as_str()
            .unwrap()
            .starts_with("file missing:")
    );

    // Neither is tried again now: one waits for its backoff, the other for its file.
    env.test().args(&["--once", "--mode", "upload"]).run();
    assert_eq!(env.calls().len(), 1);
}

#[test]
fn new_and_changed_source_files_are_queued_and_uploaded() {
    let env = TestEnv::new();
    upload_rules(
        &env,
        &env.step_argv_raw(&["--", "{relpath}"]),
        "sources = [\"index/*.json\"]\n",
    );
    env.write("index/a.json", "{}");
    env.write("index/skip.tmp", "");
    env.test().args(&["--once", "--mode", "upload"]).run();
    assert_eq!(env.sent(), [b"index/a.json".to_vec()]);
    assert_eq!(
        env.state_json("upload_log.json")["uploads"][0]["status"],
        "uploaded"
    );

    env.test().args(&["--once", "--mode", "upload"]).run();
    assert_eq!(
        env.calls().len(),
        1,
        "an unchanged source is not uploaded again"
    );

    std::fs::write(env.home().join("index/a.json"), "{\"changed\": true}").unwrap();
    env.test().args(&["--once", "--mode", "upload"]).run();
    assert_eq!(env.calls().len(), 2);
}

#[test]
fn a_malformed_upload_log_is_left_untouched() {
    let env = TestEnv::new();
    upload_rules(&env, &env.step_argv_raw(&["--", "{path}"]), "");
    let broken = "{\"uploads\": [}";
    let path = env.write("state/upload_log.json", broken);
    env.test()
        .args(&["--once", "--mode", "upload"])
        .status(1)
        .stdout_has("upload_log.json:1:14")
        .run();
    assert_eq!(std::fs::read_to_string(path).unwrap(), broken);
}
