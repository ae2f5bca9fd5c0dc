//! Uploads stay on the drive the rules name (issue 18 items 2 and 17, issue 20 items 4
//! and 5): an entry's own `remote` stays under the configured root, duplicate entries for
//! one path are reported and not run, a misspelt placeholder in `remote` is refused at
//! load; and the drive follows a source file that is gone (issue 17).

use std::path::Path;
use std::process::Command;

use pretty_assertions::assert_eq;
use serde_json::json;

use crate::util::*;

/// Upload through the recording step with `remote = "memory/{relpath}"` and `extra`.
fn recording_rules(env: &TestEnv, extra: &str) {
    env.raw_rules(&format!(
        "[actions.upload]\ncommand = {}\nremote = \"memory/{{relpath}}\"\n{extra}\n",
        env.step_argv_raw(&["--", "{path}", "{remote}"])
    ));
}

fn need_rclone() {
    let rclone = Command::new("rclone").arg("version").output();
    assert!(
        rclone.is_ok_and(|o| o.status.success()),
        "rclone is needed for this test: apt-get install rclone (.ci/run installs it)"
    );
}

// ---- issue 18 item 2: an entry's remote stays under the configured root ----

#[test]
fn issue_18_an_entry_remote_outside_the_configured_root_is_refused() {
    let env = TestEnv::new();
    recording_rules(&env, "");
    let outside = tempfile::tempdir().unwrap();
    let remotes = [
        (
            outside.path().join("abs-remote.txt").display().to_string(),
            "absolute",
        ),
        (
            format!(":local:{}/via.txt", outside.path().display()),
            "backend",
        ),
        (":sftp,host=example.com:x.txt".to_owned(), "backend"),
        ("gdrive:memory/x.txt".to_owned(), "backend"),
        ("memory/../x.txt".to_owned(), "'..'"),
        ("memory/a\\b.txt".to_owned(), "backslash"),
        ("memory/a\nb.txt".to_owned(), "control character"),
        ("elsewhere/x.txt".to_owned(), "outside memory/"),
        ("memory//etc/x.txt".to_owned(), "absolute"),
        ("memory/".to_owned(), "names no file"),
    ];
    let mut entries = Vec::new();
    for (i, (remote, _)) in remotes.iter().enumerate() {
        env.data_file(format!("r{i}.txt"), "secret");
        entries
            .push(json!({"path": format!("Data/r{i}.txt"), "remote": remote, "status": "pending"}));
    }
    let fine = env.data_file("fine.txt", "to the cloud");
    entries.push(
        json!({"path": "Data/fine.txt", "remote": "memory/sub/fine.txt", "status": "pending"}),
    );
    env.state_file("upload_log.json", &json!({ "uploads": entries }));
    env.test()
        .args(&["--once", "--mode", "upload"])
        .stdout_has(&format!("{} entries refused", remotes.len()))
        .run();
    assert_eq!(
        env.sent(),
        [bytes(&fine), b"memory/sub/fine.txt".to_vec()],
        "only the remote under memory/ is uploaded"
    );
    let log = env.state_json("upload_log.json");
    for (entry, (remote, reason)) in log["uploads"].as_array().unwrap().iter().zip(&remotes) {
        assert_eq!(entry["status"], "refused", "{remote:?}: {entry}");
        let error = entry["error"].as_str().unwrap();
        assert!(
            error.starts_with("refused: ") && error.contains(reason),
            "{remote:?} must be refused for being {reason}: {entry}"
        );
    }
    assert_eq!(log["uploads"][remotes.len()]["status"], "uploaded");
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
}

#[test]
fn issue_18_rclone_never_copies_to_a_backend_an_entry_names() {
    need_rclone();
    let env = TestEnv::new();
    let drive = env.home().join("drive");
    env.raw_rules(&format!(
        "[actions.upload]\ncommand = [\"rclone\", \"copyto\", \"--config\", \"/dev/null\", \"{{path}}\", \"{{remote}}\"]\nremote = \"{}/{{relpath}}\"\n",
        drive.display()
    ));
    let outside = tempfile::tempdir().unwrap();
    env.data_file("a.txt", "secret");
    env.state_file(
        "upload_log.json",
        &json!([{"path": "Data/a.txt", "status": "pending",
                 "remote": format!(":local:{}/via.txt", outside.path().display())}]),
    );
    env.test()
        .args(&["--once", "--mode", "upload"])
        .stdout_has("1 entry refused")
        .run();
    assert!(!outside.path().join("via.txt").exists());
    assert_eq!(env.state_json("upload_log.json")[0]["status"], "refused");
}

#[test]
fn issue_18_an_explicit_remote_root_bounds_what_entries_may_name() {
    let env = TestEnv::new();
    recording_rules(&env, "remote_root = \"memory/\"\n");
    env.data_file("a.txt", "x");
    env.data_file("b.txt", "x");
    env.state_file(
        "upload_log.json",
        &json!([
            {"path": "Data/a.txt", "remote": "memory/other/place.txt", "status": "pending"},
            {"path": "Data/b.txt", "remote": "mem/b.txt", "status": "pending"},
        ]),
    );
    env.test()
        .args(&["--once", "--mode", "upload"])
        .stdout_has("1 entry refused")
        .run();
    let log = env.state_json("upload_log.json");
    assert_eq!(log[0]["status"], "uploaded");
    assert_eq!(log[1]["status"], "refused");

    // A template outside its own root is a mistake in the rules, found at load.
    env.raw_rules(&format!(
        "[actions.upload]\ncommand = {}\nremote = \"drive:{{relpath}}\"\nremote_root = \"memory/\"\n",
        env.step_argv_raw(&["--", "{path}", "{remote}"])
    ));
    env.test()
        .args(&["check"])
        .status(2)
        .stderr_has("watch-rules.toml:3:10: remote = \"drive:{relpath}\" lies outside remote_root")
        .run();
}

#[test]
fn issue_18_the_example_upload_step_refuses_an_absolute_or_escaping_remote() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = manifest.join("examples/pipeline/drive_upload.py");
    let home = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(home.path().join("paths.json"), "{\"drive_dir\": \"drive\"}").unwrap();
    std::fs::write(home.path().join("a.txt"), "secret").unwrap();
    let abs = outside.path().join("abs-remote.txt").display().to_string();
    for remote in [
        abs.as_str(),
        "memory/../../x.txt",
        "../x.txt",
        "memory/a\\b",
    ] {
        let out = Command::new("python3")
            .arg(&script)
            .args(["a.txt", remote])
            .current_dir(home.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{remote}: {out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("refused"),
            "{remote}: {out:?}"
        );
    }
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    assert!(!home.path().join("x.txt").exists());
    let out = Command::new("python3")
        .arg(&script)
        .args(["a.txt", "memory/a.txt"])
        .current_dir(home.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        std::fs::read_to_string(home.path().join("drive/memory/a.txt")).unwrap(),
        "secret"
    );
}

// ---- issue 18 item 17: a climbing remote is refused, not left pending ----

#[test]
fn issue_18_a_remote_climbing_out_through_a_folder_is_refused_not_left_pending() {
    let env = TestEnv::new();
    recording_rules(&env, "");
    env.data_file("a.txt", "x");
    env.state_file(
        "upload_log.json",
        &json!([{"path": "Data/a.txt", "remote": "x/../../evil", "status": "pending"}]),
    );
    env.test()
        .args(&["--once", "--mode", "upload"])
        .stdout_has("1 entry refused")
        .run();
    assert!(env.calls().is_empty());
    let entry = env.state_json("upload_log.json")[0].clone();
    assert_eq!(entry["status"], "refused", "{entry}");
}

// ---- issue 20 item 4: two entries for one path are reported, not run ----

#[test]
fn issue_20_two_entries_for_one_path_are_reported_and_neither_is_run() {
    let env = TestEnv::new();
    recording_rules(&env, "sources = [\"Data/*.txt\"]\n[actions.watchdog]\n");
    env.data_file("a.txt", "x");
    env.data_file("b.txt", "y");
    let entries = json!({"uploads": [
        {"path": "Data/a.txt", "status": "uploaded", "remote": "memory/Data/a.txt",
         "size": 1, "mtime_ns": "1"},
        {"path": "Data/a.txt", "status": "pending", "remote": "--config=evil.conf"},
        {"path": "Data/b.txt", "status": "pending"},
    ]});
    env.state_file("upload_log.json", &entries);
    env.test().args(&["--once"]).run();
    assert_eq!(
        env.sent(),
        [
            bytes(&env.data().join("b.txt")),
            b"memory/Data/b.txt".to_vec()
        ],
        "only the path one entry names is uploaded"
    );
    let log = env.state_json("upload_log.json");
    assert_eq!(log["uploads"][0], entries["uploads"][0], "left as written");
    assert_eq!(log["uploads"][1], entries["uploads"][1], "left as written");
    let health = env.state_json("watchdog_state.json");
    assert_eq!(health["status"], "degraded", "{health:#}");
    assert!(
        health["problems"].as_array().unwrap().iter().any(|p| p
            .as_str()
            .unwrap()
            .starts_with("upload_log.json: path \"Data/a.txt\" is named by 2 entries")),
        "{health:#}"
    );

    // Not on the next run either, until a person keeps one.
    env.test().args(&["--once", "--mode", "upload"]).run();
    assert_eq!(env.calls().len(), 1);
}

// ---- issue 20 item 5: a misspelt placeholder in remote is refused at load ----

#[test]
fn issue_20_a_misspelt_placeholder_in_the_remote_template_is_refused_at_load() {
    let env = TestEnv::new();
    env.raw_rules(&format!(
        "[actions.upload]\ncommand = {}\nremote = \"mine/{{relpth}}/x\"\n",
        env.step_argv_raw(&["--", "{path}", "{remote}"])
    ));
    env.test()
        .args(&["check"])
        .status(2)
        .stderr_has("watch-rules.toml:3:10: unknown placeholder {relpth} in [actions.upload] remote; known here: {relpath}")
        .run();
    env.test()
        .args(&["--once", "--mode", "upload"])
        .status(2)
        .run();
}

// ---- issue 17, "the drive follows": a gone source is removed from the remote ----

/// rclone through its local backend into `{home}/drive`, `index/*.json` as sources, and
/// `remove` as given (`{remote}` filled in).
fn rclone_rules(env: &TestEnv, remove: &str, extra: &str) -> std::path::PathBuf {
    let drive = env.home().join("drive");
    env.raw_rules(&format!(
        "[actions.upload]\ncommand = [\"rclone\", \"copyto\", \"--config\", \"/dev/null\", \"{{path}}\", \"{{remote}}\"]\nremove = {remove}\nremote = \"{}/{{relpath}}\"\nsources = [\"index/*.json\"]\n{extra}",
        drive.display()
    ));
    drive
}

const DELETEFILE: &str = r#"["rclone", "deletefile", "--config", "/dev/null", "{remote}"]"#;

#[test]
fn issue_17_a_gone_source_is_removed_from_the_remote_and_comes_back_when_it_does() {
    need_rclone();
    let env = TestEnv::new();
    let drive = rclone_rules(&env, DELETEFILE, "");
    for name in ["a", "b", "c"] {
        env.write(&format!("index/{name}.json"), name);
    }
    env.test().args(&["--once", "--mode", "upload"]).run();
    assert!(drive.join("index/a.json").is_file());

    std::fs::remove_file(env.home().join("index/a.json")).unwrap();
    env.test()
        .args(&["--once", "--mode", "upload"])
        .stdout_has("removed 1 of 1 gone file from the remote")
        .run();
    assert!(
        !drive.join("index/a.json").exists(),
        "removed from the drive"
    );
    assert!(drive.join("index/b.json").is_file(), "the others stay");
    let log = env.state_json("upload_log.json");
    let entry = log["uploads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == "index/a.json")
        .unwrap()
        .clone();
    assert_eq!(entry["status"], "removed", "{entry}");
    assert!(entry["removed_at"].is_string(), "{entry}");
    assert!(entry["updated_at"].is_string(), "{entry}");

    // Nothing more to do; and a source that comes back is uploaded again.
    env.test()
        .args(&["--once", "--mode", "upload"])
        .stdout_has("nothing to do")
        .run();
    env.write("index/a.json", "back");
    env.test().args(&["--once", "--mode", "upload"]).run();
    assert_eq!(
        std::fs::read_to_string(drive.join("index/a.json")).unwrap(),
        "back"
    );
}

#[test]
fn issue_17_many_sources_gone_at_once_are_held_until_confirmed() {
    need_rclone();
    let env = TestEnv::new();
    let drive = rclone_rules(&env, DELETEFILE, "max_remove = 1\n");
    for name in ["a", "b", "c", "d"] {
        env.write(&format!("index/{name}.json"), name);
    }
    env.test().args(&["--once", "--mode", "upload"]).run();

    std::fs::remove_file(env.home().join("index/a.json")).unwrap();
    std::fs::remove_file(env.home().join("index/b.json")).unwrap();
    env.test()
        .args(&["--once", "--mode", "upload"])
        .status(1)
        .stdout_has("held back 2 removals: 2 of 4 uploaded files are gone at once, more than max_remove (1) allows")
        .stdout_has("--confirm-removals")
        .run();
    assert!(drive.join("index/a.json").is_file(), "nothing removed");
    assert!(drive.join("index/b.json").is_file(), "nothing removed");

    // A vanished folder: every uploaded file gone at once.
    let index = env.home().join("index");
    std::fs::rename(&index, env.home().join("index.away")).unwrap();
    env.test()
        .args(&["--once", "--mode", "upload"])
        .status(1)
        .stdout_has("every uploaded file (4) is gone at once")
        .run();
    assert_eq!(std::fs::read_dir(drive.join("index")).unwrap().count(), 4);
    std::fs::rename(env.home().join("index.away"), &index).unwrap();

    env.test()
        .args(&["--once", "--mode", "upload", "--confirm-removals"])
        .stdout_has("removed 2 of 2 gone files from the remote")
        .run();
    assert!(!drive.join("index/a.json").exists());
    assert!(!drive.join("index/b.json").exists());
    assert!(drive.join("index/c.json").is_file());
}

#[test]
fn issue_17_a_removal_already_done_on_the_remote_succeeds_through_the_documented_wrapper() {
    need_rclone();
    let env = TestEnv::new();
    // The README's wrapper: rclone deletefile exits 1 for a file already gone, like any
    // other failure; `lsjson --stat` exits 3 (not found) for it.
    let drive = rclone_rules(
        &env,
        r#"["sh", "-c", "rclone deletefile --config /dev/null \"$1\" && exit 0; rclone lsjson --stat --config /dev/null \"$1\" >/dev/null 2>&1; [ $? -eq 3 ]", "sh", "{remote}"]"#,
        "",
    );
    for name in ["a", "b", "c"] {
        env.write(&format!("index/{name}.json"), name);
    }
    env.test().args(&["--once", "--mode", "upload"]).run();
    std::fs::remove_file(env.home().join("index/a.json")).unwrap();
    std::fs::remove_file(drive.join("index/a.json")).unwrap();
    env.test()
        .args(&["--once", "--mode", "upload"])
        .stdout_has("removed 1 of 1 gone file from the remote")
        .run();

    // Plain deletefile fails on it, and the entry stays uploaded with the error, to be
    // tried again by the next run.
    rclone_rules(&env, DELETEFILE, "");
    std::fs::remove_file(env.home().join("index/b.json")).unwrap();
    std::fs::remove_file(drive.join("index/b.json")).unwrap();
    env.test()
        .args(&["--once", "--mode", "upload"])
        .status(1)
        .run();
    let log = env.state_json("upload_log.json");
    let b = log["uploads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == "index/b.json")
        .unwrap()
        .clone();
    assert_eq!(b["status"], "uploaded", "{b}");
    assert!(
        b["error"].as_str().unwrap().starts_with("removal failed:"),
        "{b}"
    );
}

#[test]
fn issue_17_a_gone_source_whose_remote_leaves_the_root_is_refused_not_removed() {
    let env = TestEnv::new();
    recording_rules(
        &env,
        &format!(
            "remove = {}\nmax_remove = \"100%\"\n",
            env.step_argv_raw(&["--", "{remote}"])
        ),
    );
    env.data_file("kept.txt", "x");
    env.state_file(
        "upload_log.json",
        &json!([
            {"path": "Data/gone.txt", "status": "uploaded", "remote": "gdrive:important.txt"},
            {"path": "Data/gone2.txt", "status": "uploaded"},
            {"path": "Data/kept.txt", "status": "uploaded", "remote": "memory/Data/kept.txt"},
        ]),
    );
    env.test()
        .args(&["--once", "--mode", "upload"])
        .stdout_has("1 entry refused")
        .run();
    assert_eq!(
        env.sent(),
        [b"memory/Data/gone2.txt".to_vec()],
        "only the remote under the root, from the template when none is recorded"
    );
    let log = env.state_json("upload_log.json");
    assert_eq!(log[0]["status"], "refused");
    assert_eq!(log[1]["status"], "removed");
    assert_eq!(log[2]["status"], "uploaded");
}

#[test]
fn issue_17_the_example_pipeline_removes_a_deleted_memory_from_the_drive() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let env = TestEnv::new();
    for name in [
        "paths.json",
        "ingest.py",
        "retry_runner.py",
        "drive_upload.py",
        "watchdog.py",
    ] {
        std::fs::copy(
            manifest.join("examples/pipeline").join(name),
            env.home().join(name),
        )
        .unwrap();
    }
    for entry in std::fs::read_dir(manifest.join("examples/pipeline/Data")).unwrap() {
        let entry = entry.unwrap();
        if entry.path().is_file() {
            std::fs::copy(entry.path(), env.data().join(entry.file_name())).unwrap();
            set_old(&env.data().join(entry.file_name()));
        }
    }
    let rules = manifest.join("examples/pipeline/watch-rules.toml");
    let rules = rules.to_str().unwrap();
    env.test().args(&["--rules", rules, "--once"]).run();
    let drive = env.home().join("drive/memory/index");
    let before = std::fs::read_dir(&drive).unwrap().count();
    assert!(before >= 2, "{before} index files on the drive");

    let memory = std::fs::read_dir(env.data())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "txt"))
        .unwrap();
    std::fs::remove_file(&memory).unwrap();
    env.test().args(&["--rules", rules, "--once"]).run();
    assert_eq!(
        std::fs::read_dir(&drive).unwrap().count(),
        before - 1,
        "the deleted memory's index file is gone from the drive"
    );
    let log = env.state_json("upload_log.json");
    let removed = log["uploads"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["status"] == "removed")
        .count();
    assert_eq!(removed, 1, "{log:#}");
}
