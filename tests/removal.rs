//! The index mirrors the Data folder (issue 17): a gone memory is a pending removal, told
//! to the `remove` command and dropped once confirmed; renames and restores are exact; a
//! vanished or emptied Data folder removes nothing until a person confirms.

use std::path::Path;

use crate::util::*;

/// Ingest through the recording step tagged `add`, removals through it tagged `remove`,
/// with `remove_args` (say `--fail`, `x`) before the files, plus `extra` ingest lines.
fn mirror_rules(env: &TestEnv, remove_args: &[&str], extra: &str) {
    let mut args = vec!["--tag", "remove"];
    args.extend(remove_args);
    args.push("--");
    let remove = env.step_argv(&args);
    env.rules(
        &["--tag", "add", "--"],
        &format!("remove = {remove}\n{extra}"),
    );
}

/// The files each call of the step tagged `tag` was given, oldest call first.
fn given(env: &TestEnv, tag: &str) -> Vec<Vec<Vec<u8>>> {
    env.calls()
        .into_iter()
        .filter(|c| c.tag.as_deref() == Some(tag))
        .map(|c| c.args)
        .collect()
}

/// Whether ingest_hash.json, with its journal replayed, holds a record of `key`.
fn recorded(env: &TestEnv, key: &str) -> bool {
    let path = env.state("ingest_hash.json");
    let mut held = path.exists()
        && env.state_json("ingest_hash.json")["files"]
            .get(key)
            .is_some();
    let journal = std::fs::read_to_string(env.state("ingest_hash.json.journal"));
    for line in journal.unwrap_or_default().lines() {
        let line: serde_json::Value = serde_json::from_str(line).unwrap();
        if line["key"] == key {
            held = line.get("removed_at").is_none();
        }
    }
    held
}

fn once(env: &TestEnv, args: &[&str]) -> std::process::Output {
    let mut all = vec!["--once", "--mode", "ingest"];
    all.extend(args);
    env.run(&all)
}

fn abs(path: &Path) -> Vec<u8> {
    bytes(path)
}

#[test]
fn issue_17_a_deleted_memory_is_told_to_the_remove_step_and_dropped_once_confirmed() {
    let env = TestEnv::new();
    mirror_rules(&env, &[], "");
    let cabin = env.data_file("cabin.txt", "wifi password: hunter2");
    env.data_file("milk.txt", "buy milk");
    assert_exit(&once(&env, &[]), 0);
    assert_eq!(given(&env, "add").len(), 1);
    std::fs::remove_file(&cabin).unwrap();
    let out = once(&env, &["--json"]);
    assert_exit(&out, 0);
    assert_eq!(
        given(&env, "remove"),
        vec![vec![abs(&cabin)]],
        "{}",
        stdout(&out)
    );
    assert_eq!(given(&env, "add").len(), 1, "nothing new to send");
    let record = run_record(&out);
    assert_eq!(
        action(&record, "ingest")["counts"]["removed"],
        1,
        "{record:#}"
    );
    // Once confirmed, the record is gone: the next run has nothing to do.
    let out = once(&env, &[]);
    assert_exit(&out, 0);
    assert_eq!(given(&env, "remove").len(), 1);
    assert!(!recorded(&env, "cabin.txt"));
    assert!(recorded(&env, "milk.txt"));
}

#[test]
fn issue_17_a_failed_removal_stays_pending_and_is_tried_again() {
    let env = TestEnv::new();
    mirror_rules(&env, &["--fail", "cabin"], "");
    let cabin = env.data_file("cabin.txt", "wifi password: hunter2");
    env.data_file("milk.txt", "buy milk");
    assert_exit(&once(&env, &[]), 0);
    std::fs::remove_file(&cabin).unwrap();
    let out = once(&env, &[]);
    assert_exit(&out, 1);
    assert!(stdout(&out).contains("cabin.txt"), "{}", stdout(&out));
    assert!(
        recorded(&env, "cabin.txt"),
        "a failed removal keeps its record"
    );
    // status shows it pending.
    let status = env.run(&["status"]);
    assert!(
        stdout(&status).contains("1 removal pending"),
        "{}",
        stdout(&status)
    );
    assert_exit(&once(&env, &[]), 1);
    assert_eq!(given(&env, "remove").len(), 2, "tried again");
}

#[test]
fn issue_17_a_rename_sends_the_new_path_then_removes_the_old_in_one_run() {
    let env = TestEnv::new();
    mirror_rules(&env, &[], "");
    let milk = env.data_file("milk.txt", "buy milk");
    assert_exit(&once(&env, &[]), 0);
    std::fs::create_dir(env.data().join("g")).unwrap();
    let moved = env.data().join("g/m.txt");
    std::fs::rename(&milk, &moved).unwrap();
    let out = once(&env, &[]);
    assert_exit(&out, 0);
    let calls: Vec<(Option<String>, Vec<Vec<u8>>)> =
        env.calls().into_iter().map(|c| (c.tag, c.args)).collect();
    assert_eq!(
        calls[1..],
        [
            (Some("add".to_owned()), vec![abs(&moved)]),
            (Some("remove".to_owned()), vec![abs(&milk)]),
        ],
        "added before removed, in the same run"
    );
    // Undo the rename: milk.txt's record was dropped, so it is new and sent again.
    std::fs::rename(&moved, &milk).unwrap();
    assert_exit(&once(&env, &[]), 0);
    assert_eq!(given(&env, "add").last().unwrap(), &vec![abs(&milk)]);
    assert_eq!(given(&env, "remove").last().unwrap(), &vec![abs(&moved)]);
    assert!(recorded(&env, "milk.txt"));
    assert!(!recorded(&env, "g/m.txt"));
}

#[test]
fn issue_17_an_undone_rename_is_sent_again_without_a_remove_command() {
    // The issue's repro: mv away and back keeps inode and mtime. Without a remove
    // command the index is never told, but a restored path is never counted as indexed
    // on the strength of a record its file left.
    let env = TestEnv::new();
    env.rules(&["--"], "");
    let milk = env.data_file("milk.txt", "buy milk");
    assert_exit(&once(&env, &[]), 0);
    std::fs::create_dir(env.data().join("g")).unwrap();
    let moved = env.data().join("g/m.txt");
    std::fs::rename(&milk, &moved).unwrap();
    assert_exit(&once(&env, &[]), 0);
    std::fs::rename(&moved, &milk).unwrap();
    let out = once(&env, &[]);
    assert_exit(&out, 0);
    assert_eq!(
        env.sent(),
        vec![abs(&milk), abs(&moved), abs(&milk)],
        "{}",
        stdout(&out)
    );
}

#[test]
fn issue_17_a_memory_deleted_then_recreated_with_the_same_content_is_sent_again() {
    for with_remove in [true, false] {
        let env = TestEnv::new();
        if with_remove {
            mirror_rules(&env, &[], "");
        } else {
            env.rules(&["--tag", "add", "--"], "");
        }
        let note = env.data_file("note.txt", "same words");
        // A second memory: an emptied data_dir is held back, not removed.
        env.data_file("other.txt", "other words");
        assert_exit(&once(&env, &[]), 0);
        std::fs::remove_file(&note).unwrap();
        assert_exit(&once(&env, &[]), 0);
        env.data_file("note.txt", "same words");
        let out = once(&env, &[]);
        assert_exit(&out, 0);
        assert_eq!(
            given(&env, "add").last(),
            Some(&vec![abs(&note)]),
            "with remove: {with_remove}\n{}",
            stdout(&out)
        );
    }
}

#[test]
fn issue_17_a_held_removal_that_comes_back_unchanged_is_kept() {
    let env = TestEnv::new();
    mirror_rules(&env, &[], "max_remove = 0\n");
    let note = env.data_file("note.txt", "same words");
    env.data_file("other.txt", "other words");
    assert_exit(&once(&env, &[]), 0);
    let away = env.home().join("note.txt");
    std::fs::rename(&note, &away).unwrap();
    let out = once(&env, &[]);
    assert_exit(&out, 1);
    assert!(
        stdout(&out).contains("held back 1 removal"),
        "{}",
        stdout(&out)
    );
    // Never sent, so the index still holds it: back as it was, it is simply kept,
    // nothing sent and nothing removed.
    std::fs::rename(&away, &note).unwrap();
    let out = once(&env, &[]);
    assert_exit(&out, 0);
    assert_eq!(given(&env, "add").len(), 1, "{}", stdout(&out));
    assert!(given(&env, "remove").is_empty());
    assert_exit(&once(&env, &[]), 0);
    assert!(given(&env, "remove").is_empty(), "no longer pending");
}

#[test]
fn issue_17_a_memory_back_after_a_removal_was_sent_is_sent_again() {
    // The remove step failed (or crashed, or timed out) after it may have removed the
    // memory: whether the index still holds it is unknown, so it goes in again (found
    // by a hostile probe: a same-content restore was taken as indexed).
    let env = TestEnv::new();
    mirror_rules(&env, &["--fail", "note"], "");
    let note = env.data_file("note.txt", "same words");
    env.data_file("other.txt", "other words");
    assert_exit(&once(&env, &[]), 0);
    let away = env.home().join("note.txt");
    std::fs::rename(&note, &away).unwrap();
    assert_exit(&once(&env, &[]), 1);
    std::fs::rename(&away, &note).unwrap();
    let out = once(&env, &[]);
    assert_exit(&out, 0);
    assert_eq!(
        given(&env, "add").last(),
        Some(&vec![abs(&note)]),
        "{}",
        stdout(&out)
    );
    assert_eq!(given(&env, "add").len(), 2);
    assert_eq!(given(&env, "remove").len(), 1);
}

#[test]
fn issue_17_a_kill_during_a_removal_leaves_the_memory_to_be_sent_again_when_restored() {
    let env = TestEnv::new();
    mirror_rules(&env, &["--sleep", "3"], "");
    let note = env.data_file("note.txt", "same words");
    env.data_file("other.txt", "other words");
    assert_exit(&once(&env, &[]), 0);
    let away = env.home().join("note.txt");
    std::fs::rename(&note, &away).unwrap();
    let mut child = env
        .command(&["--once", "--mode", "ingest"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Duration::from_secs(30);
    wait_until("the remove step starts", deadline, &String::new, || {
        !given(&env, "remove").is_empty()
    });
    child.kill().unwrap();
    child.wait().unwrap();
    // The orphaned step keeps ingest.lock until it ends (see Security): runs wait.
    std::fs::rename(&away, &note).unwrap();
    let mut sent_again = false;
    wait_until(
        "the restored memory is sent again",
        deadline,
        &String::new,
        || {
            let out = env.run(&["--once", "--mode", "ingest"]);
            sent_again = given(&env, "add").len() == 2;
            sent_again || out.status.code() != Some(3)
        },
    );
    assert!(sent_again, "{:?}", given(&env, "add"));
}

#[test]
fn issue_17_a_memory_replaced_by_a_link_or_a_folder_is_gone() {
    for replace_with in ["link", "folder"] {
        let env = TestEnv::new();
        mirror_rules(&env, &[], "");
        let soup = env.data_file("soup.txt", "lentil soup");
        let heron = env.data_file("heron.txt", "a heron on the rock");
        env.data_file("car.txt", "parked on level 3");
        assert_exit(&once(&env, &[]), 0);
        std::fs::remove_file(&soup).unwrap();
        if replace_with == "link" {
            std::os::unix::fs::symlink(&heron, &soup).unwrap();
        } else {
            std::fs::create_dir(&soup).unwrap();
        }
        let out = once(&env, &[]);
        assert_exit(&out, 0);
        assert_eq!(
            given(&env, "remove"),
            vec![vec![abs(&soup)]],
            "{replace_with}: {}",
            stdout(&out)
        );
    }
}

#[test]
fn issue_17_new_unrelated_files_do_not_excuse_emptying_the_index() {
    let env = TestEnv::new();
    mirror_rules(&env, &[], "");
    let old: Vec<_> = (0..6)
        .map(|i| env.data_file(format!("n{i}.txt"), &format!("memory {i}")))
        .collect();
    assert_exit(&once(&env, &[]), 0);
    // Another folder's contents where Data was: as many files, none of them ours.
    for f in &old {
        std::fs::remove_file(f).unwrap();
    }
    for i in 0..7 {
        env.data_file(format!("other{i}.txt"), &format!("unrelated {i}"));
    }
    let out = once(&env, &[]);
    assert_exit(&out, 1);
    assert!(
        stdout(&out).contains("held back 6 removals"),
        "{}",
        stdout(&out)
    );
    assert!(given(&env, "remove").is_empty());
}

#[test]
fn issue_17_a_memory_whose_new_content_failed_is_sent_again_when_restored() {
    let env = TestEnv::new();
    let soup = env.data_file("soup.txt", "lentil soup");
    // First content goes in (the step fails only while the marker file exists).
    let marker = env.home().join("failing");
    env.rules(
        &[
            "--tag",
            "add",
            "--fail-while",
            marker.to_str().unwrap(),
            "--",
        ],
        "",
    );
    assert_exit(&once(&env, &[]), 0);
    std::fs::write(&marker, "").unwrap();
    std::fs::write(&soup, "lentil soup \u{1}changed").unwrap();
    set_old(&soup);
    assert_exit(&once(&env, &[]), 1);
    // The step may have dropped the old chunks before failing: putting the old text
    // back must send it again, not trust the old record.
    std::fs::remove_file(&marker).unwrap();
    std::fs::write(&soup, "lentil soup").unwrap();
    set_old(&soup);
    let out = once(&env, &[]);
    assert_exit(&out, 0);
    assert_eq!(given(&env, "add").len(), 3, "{}", stdout(&out));
}

#[test]
fn issue_17_a_rename_whose_new_path_failed_keeps_the_old_one() {
    let env = TestEnv::new();
    mirror_rules(&env, &[], "");
    let soup = env.data_file("soup.txt", "lentil soup");
    env.data_file("car.txt", "parked on level 3");
    assert_exit(&once(&env, &[]), 0);
    // The step now fails on the renamed file.
    let remove = env.step_argv(&["--tag", "remove", "--"]);
    env.rules(
        &["--tag", "add", "--fail", "renamed", "--"],
        &format!("remove = {remove}\n"),
    );
    std::fs::rename(&soup, env.data().join("renamed.txt")).unwrap();
    let out = once(&env, &[]);
    assert_exit(&out, 1);
    assert!(given(&env, "remove").is_empty(), "{}", stdout(&out));
    assert!(recorded(&env, "soup.txt"));
}

#[test]
fn issue_17_removed_records_are_reported_until_forgotten_by_hand() {
    let env = TestEnv::new();
    env.rules(&["--"], "");
    let a = env.data_file("a.txt", "alpha");
    let b = env.data_file("b.txt", "beta");
    env.data_file("c.txt", "gamma");
    assert_exit(&once(&env, &[]), 0);
    std::fs::remove_file(&a).unwrap();
    std::fs::remove_file(&b).unwrap();
    let out = once(&env, &[]);
    assert!(stdout(&out).contains("2 removed"), "{}", stdout(&out));
    // A file still there is not forgotten.
    let out = env.run(&["forget", "c.txt"]);
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("c.txt: still in data_dir"),
        "{}",
        stderr(&out)
    );
    let out = env.run(&["forget", "a.txt"]);
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("forgot 1 record"), "{}", stdout(&out));
    assert!(!recorded(&env, "a.txt"));
    assert!(recorded(&env, "b.txt"));
    let out = env.run(&["forget", "--all"]);
    assert_exit(&out, 0);
    assert!(!recorded(&env, "b.txt"));
    assert!(recorded(&env, "c.txt"));
    let out = once(&env, &[]);
    assert!(!stdout(&out).contains("removed"), "{}", stdout(&out));
}

#[test]
fn issue_17_an_emptied_or_vanished_data_folder_removes_nothing_until_confirmed() {
    let env = TestEnv::new();
    mirror_rules(&env, &[], "");
    let files: Vec<_> = (0..6)
        .map(|i| env.data_file(format!("m{i}.txt"), &format!("memory {i}")))
        .collect();
    assert_exit(&once(&env, &[]), 0);
    // A sync tool empties the folder: nothing is removed, the run says why and what to do.
    for f in &files {
        std::fs::remove_file(f).unwrap();
    }
    let out = once(&env, &[]);
    assert_exit(&out, 1);
    assert!(given(&env, "remove").is_empty());
    assert!(
        stdout(&out).contains("held back 6 removals"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("--confirm-removals"),
        "{}",
        stdout(&out)
    );
    let status = env.run(&["status", "--json"]);
    let health: serde_json::Value = serde_json::from_str(&stdout(&status)).unwrap();
    assert_eq!(health["status"], "degraded", "{health:#}");
    // An unmounted disk: data_dir is gone altogether.
    std::fs::remove_dir(env.data()).unwrap();
    assert_exit(&once(&env, &[]), 1);
    assert!(given(&env, "remove").is_empty());
    // A person confirms: the removals go.
    std::fs::create_dir(env.data()).unwrap();
    let out = once(&env, &["--confirm-removals"]);
    assert_exit(&out, 0);
    assert_eq!(given(&env, "remove").concat().len(), 6, "{}", stdout(&out));
}

#[test]
fn issue_17_removals_under_the_limit_go_and_over_it_are_held() {
    let env = TestEnv::new();
    mirror_rules(&env, &[], "max_remove = 2\n");
    let files: Vec<_> = (0..5)
        .map(|i| env.data_file(format!("m{i}.txt"), &format!("memory {i}")))
        .collect();
    assert_exit(&once(&env, &[]), 0);
    std::fs::remove_file(&files[0]).unwrap();
    std::fs::remove_file(&files[1]).unwrap();
    assert_exit(&once(&env, &[]), 0);
    assert_eq!(given(&env, "remove").concat().len(), 2);
    for f in &files[2..] {
        std::fs::remove_file(f).unwrap();
    }
    let out = once(&env, &[]);
    assert_exit(&out, 1);
    assert!(
        stdout(&out).contains("held back 3 removals"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn issue_17_the_watcher_tells_the_remove_step_a_deleted_memory_at_once() {
    let env = TestEnv::new();
    let add = env.step_argv(&["--tag", "add", "--"]);
    let remove = env.step_argv(&["--tag", "remove", "--"]);
    env.raw_rules(&format!(
        "debounce = \"100ms\"\n[actions.ingest]\ncommand = {add}\nremove = {remove}\nsettle = \"0s\"\n\n\
         [[rules]]\nname = \"memories\"\nin = \"data\"\npaths = [\"**/*.txt\"]\non = [\"create\", \"modify\", \"rename\", \"remove\"]\nrun = [\"ingest\"]\n"
    ));
    let cabin = env.data_file("cabin.txt", "wifi password: hunter2");
    env.data_file("milk.txt", "buy milk");
    let w = env.watch(&[], &[]);
    let deadline = std::time::Duration::from_secs(30);
    wait_until("the startup run sends both", deadline, &|| w.log(), || {
        given(&env, "add").concat().len() == 2
    });
    std::fs::remove_file(&cabin).unwrap();
    wait_until(
        "the remove step hears of cabin.txt",
        deadline,
        &|| w.log(),
        || given(&env, "remove") == vec![vec![abs(&cabin)]],
    );
    wait_until("its record is dropped", deadline, &|| w.log(), || {
        !recorded(&env, "cabin.txt")
    });
}

#[test]
fn issue_17_the_watcher_removes_a_folder_renamed_or_moved_out_of_data() {
    let env = TestEnv::new();
    let add = env.step_argv(&["--tag", "add", "--"]);
    let remove = env.step_argv(&["--tag", "remove", "--"]);
    env.raw_rules(&format!(
        "debounce = \"100ms\"\n[actions.ingest]\ncommand = {add}\nremove = {remove}\nsettle = \"0s\"\nmax_remove = \"100%\"\n\n\
         [[rules]]\nname = \"memories\"\nin = \"data\"\npaths = [\"**/*.txt\"]\non = [\"create\", \"modify\", \"rename\", \"remove\"]\nrun = [\"ingest\"]\n"
    ));
    let car = env.data_file("sub/car.txt", "parked on level 3");
    env.data_file("heron.txt", "a heron on the rock");
    let w = env.watch(&[], &[]);
    let deadline = std::time::Duration::from_secs(30);
    wait_until("the startup run sends both", deadline, &|| w.log(), || {
        given(&env, "add").concat().len() == 2
    });
    // A folder renamed: the new path is sent, the old one removed, without a tick.
    std::fs::rename(env.data().join("sub"), env.data().join("notes")).unwrap();
    let moved = env.data().join("notes/car.txt");
    wait_until("sub/car.txt is removed", deadline, &|| w.log(), || {
        given(&env, "remove").concat().contains(&abs(&car))
    });
    assert!(given(&env, "add").concat().contains(&abs(&moved)));
    // A folder moved out of data_dir takes its memories with it.
    std::fs::rename(env.data().join("notes"), env.home().join("elsewhere")).unwrap();
    wait_until("notes/car.txt is removed", deadline, &|| w.log(), || {
        given(&env, "remove").concat().contains(&abs(&moved))
    });
}
