//! Hostile round three (issue 18): what an attacker, a careless neighbour or an unlucky
//! user can do to a pipeline home, each case through the real binary.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::util::*;

/// Runs setfacl (Debian's `acl` package; `.ci/run` installs it), failing the test on error.
fn setfacl(args: &[&str], path: &Path) {
    let status = Command::new("setfacl")
        .args(args)
        .arg(path)
        .status()
        .expect("setfacl (apt-get install acl)");
    assert!(status.success(), "setfacl {args:?} {}", path.display());
}

// ---- item 1: StrictModes judges who can write, ACLs included ----

#[test]
fn issue_18_a_rules_file_a_named_user_can_write_through_an_acl_is_refused() {
    let env = TestEnv::new();
    env.rules(&["--"], "");
    env.data_file("a.txt", "alpha");
    let rules = env.home().join("watch-rules.toml");
    setfacl(&["-m", "u:nobody:rw"], &rules);
    env.test()
        .args(&["--once", "--mode", "ingest"])
        .status(2)
        .stderr_has("{home}/watch-rules.toml: it is writable by user nobody through an ACL entry")
        .stderr_has("hint: setfacl -x u:nobody {home}/watch-rules.toml")
        .run();
    assert!(env.calls().is_empty());
    // A named user who may only read is no one to fear.
    setfacl(&["-m", "u:nobody:r"], &rules);
    env.test().args(&["--once", "--mode", "ingest"]).run();
    assert_eq!(env.calls().len(), 1);
}

#[test]
fn issue_18_a_named_group_acl_entry_with_write_is_refused_unless_the_mask_denies_it() {
    let env = TestEnv::new();
    env.rules(&["--"], "");
    let rules = env.home().join("watch-rules.toml");
    setfacl(&["-m", "g:nogroup:rw"], &rules);
    env.test()
        .args(&["check"])
        .status(2)
        .stderr_has("it is writable by group nogroup through an ACL entry")
        .stderr_has("hint: setfacl -x g:nogroup {home}/watch-rules.toml")
        .run();
    // The mask limits every named entry: r-- leaves nogroup unable to write.
    setfacl(&["-m", "m::r"], &rules);
    env.test().args(&["check"]).run();
}

#[test]
fn issue_18_a_state_folder_a_named_user_can_write_through_an_acl_is_refused() {
    let env = TestEnv::new();
    env.rules(&["--"], "");
    let state = env.home().join("state");
    std::fs::create_dir_all(&state).unwrap();
    setfacl(&["-m", "u:nobody:rwx"], &state);
    env.test()
        .args(&["--once"])
        .status(2)
        .stderr_has("{home}/state: this folder is writable by user nobody through an ACL entry")
        .run();
}

#[test]
fn issue_18_a_default_acl_that_would_give_new_state_files_away_is_refused() {
    let env = TestEnv::new();
    env.rules(&["--"], "");
    let state = env.home().join("state");
    std::fs::create_dir_all(&state).unwrap();
    // The folder itself is fine, but every file memsched writes there (atomically, as a
    // new file) would be writable by nobody.
    setfacl(&["-d", "-m", "u:nobody:rw"], &state);
    env.test()
        .args(&["--once"])
        .status(2)
        .stderr_has("{home}/state: files created in this folder would be writable by user nobody (its default ACL)")
        .stderr_has("hint: setfacl -k {home}/state")
        .run();
}

// ---- item 11: nothing placed where a state file should be can freeze memsched ----

/// Runs `cmd` and hands back its output, failing the test if it has not ended within
/// `within` (the child is killed first, so a hang fails instead of freezing the suite).
fn output_within(mut cmd: Command, within: Duration) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    match rx.recv_timeout(within) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("memsched did not end within {within:?}");
        }
    }
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(status.success());
}

#[test]
fn issue_18_a_fifo_where_a_state_file_should_be_is_refused_without_blocking() {
    for (name, mode) in [
        ("task_queue.json", "retry"),
        ("ingest_hash.json", "ingest"),
        ("ingest_hash.json.journal", "ingest"),
        ("upload_log.json", "upload"),
    ] {
        let env = TestEnv::new();
        let retry = env.step_argv_raw(&["--", "{task_id}"]);
        let upload = env.step_argv_raw(&["--", "{path}"]);
        env.rules(
            &["--"],
            &format!(
                "[actions.retry]\ncommand = {retry}\n[actions.upload]\ncommand = {upload}\nremote = \"{{relpath}}\"\n"
            ),
        );
        env.data_file("a.txt", "alpha");
        std::fs::create_dir_all(env.home().join("state")).unwrap();
        let fifo = env.state(name);
        mkfifo(&fifo);
        let out = output_within(
            env.command(&["--once", "--mode", mode]),
            Duration::from_secs(20),
        );
        let text = format!("{}{}", stdout(&out), stderr(&out));
        assert!(
            text.contains("not a regular file but a FIFO"),
            "{name}: {text}"
        );
        assert_ne!(out.status.code(), Some(0), "{name}: {text}");
        // status reads every state file: it must answer too, naming the file.
        let out = output_within(env.command(&["status"]), Duration::from_secs(20));
        let text = format!("{}{}", stdout(&out), stderr(&out));
        assert!(text.contains(name), "status, {name}: {text}");
        assert!(fifo.exists(), "{name}: the FIFO is left where it is");
    }
}

#[test]
fn issue_18_a_fifo_where_paths_json_or_a_lock_should_be_is_refused_without_blocking() {
    let env = TestEnv::new();
    env.rules(&["--"], "");
    env.data_file("a.txt", "alpha");
    std::fs::create_dir_all(env.home().join("state")).unwrap();
    mkfifo(&env.state("ingest.lock"));
    let out = output_within(
        env.command(&["--once", "--mode", "ingest"]),
        Duration::from_secs(20),
    );
    assert!(
        stderr(&out).contains("ingest.lock: not a regular file"),
        "{}",
        stderr(&out)
    );
    let paths = env.home().join("paths.json");
    std::fs::remove_file(&paths).unwrap();
    mkfifo(&paths);
    let out = output_within(env.command(&["--once"]), Duration::from_secs(20));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("paths.json"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not a regular file but a FIFO"),
        "{}",
        stderr(&out)
    );
}
