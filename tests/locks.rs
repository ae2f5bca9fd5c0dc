//! Per-action locks: a held lock skips the action with the holder's pid and exit 3, and
//! two concurrent runs never send a file twice.

use std::collections::HashSet;

use crate::util::*;

#[test]
fn a_held_action_lock_skips_the_action_naming_the_holder() {
    let env = TestEnv::new();
    env.rules(&["--"], "");
    env.data_file("a.txt", "a");
    std::fs::create_dir_all(env.home().join("state")).unwrap();
    let _held = memsched::os::lock::try_acquire(&env.state("ingest.lock")).unwrap();

    env.test()
        .args(&["--once", "--mode", "ingest"])
        .status(3)
        .stdout_has(&format!("pid {} holds", std::process::id()))
        .run();
    assert!(env.calls().is_empty());
}

#[test]
fn two_concurrent_runs_send_each_of_1000_files_exactly_once() {
    let env = TestEnv::new();
    env.rules(&["--"], "batch_size = 100\n");
    let mut expected = HashSet::new();
    for i in 0..1000 {
        expected.insert(bytes(
            &env.data_file(format!("d{}/f{i}.txt", i % 10), &format!("memory {i}")),
        ));
    }
    let spawn = || {
        env.command(&["--once", "--mode", "ingest"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let first = spawn();
    let second = spawn();
    let codes: Vec<i32> = [first, second]
        .into_iter()
        .map(|c| c.wait_with_output().unwrap().status.code().unwrap())
        .collect();
    // Either they overlapped (one skips with 3) or the second found nothing left (0).
    assert!(codes.iter().all(|c| *c == 0 || *c == 3), "{codes:?}");

    let sent = env.sent();
    let unique: HashSet<Vec<u8>> = sent.iter().cloned().collect();
    assert_eq!(sent.len(), 1000, "some file reached the step twice");
    assert_eq!(unique, expected);
    assert_eq!(
        env.state_json("ingest_hash.json")["files"]
            .as_object()
            .unwrap()
            .len(),
        1000
    );
}
