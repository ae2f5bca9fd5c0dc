//! Hostile round three (issue 18): what an attacker, a careless neighbour or an unlucky
//! user can do to a pipeline home, each case through the real binary.

use std::path::Path;
use std::process::Command;

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
