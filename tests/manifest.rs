//! The ingest manifest at scale (issue 8): the journal beside ingest_hash.json, a crash
//! mid-line, event runs that plan from the changed paths alone, and summaries whose every
//! count is true (issue 11).

use std::path::{Path, PathBuf};

use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use memsched::actions::ingest::WatcherHints;
use memsched::config::paths::Paths;
use memsched::config::rules::Rules;
use memsched::model::action::Action;
use memsched::model::trigger::Trigger;
use memsched::reconcile::{self, Request};
use memsched::run::report::RunRecord;
use memsched::state::ingest_hash::Held;

use crate::harness::Test;
use crate::util::*;

/// Moves every record of ingest_hash.json into its journal, one line each, as a watcher
/// killed before its next compaction leaves them; returns the journal's path.
fn records_to_journal(env: &TestEnv) -> PathBuf {
    let mut doc = env.state_json("ingest_hash.json");
    let files = std::mem::take(doc["files"].as_object_mut().unwrap());
    let mut lines = String::new();
    for (key, rec) in files {
        let mut line = json!({"key": key});
        line.as_object_mut()
            .unwrap()
            .extend(rec.as_object().unwrap().clone());
        lines.push_str(&format!("{line}\n"));
    }
    env.write("state/ingest_hash.json", &doc.to_string());
    env.write("state/ingest_hash.json.journal", &lines)
}

#[test]
fn issue_8_a_journal_cut_mid_line_by_a_crash_loses_nothing() {
    let env = TestEnv::new();
    env.rules(&["--"], "");
    let a = env.data_file("a.txt", "alpha");
    env.test().args(&["--once", "--mode", "ingest"]).run();
    let journal = records_to_journal(&env);
    // A crash in the middle of the next line: b.txt's record is half written.
    let b = env.data_file("b.txt", "beta");
    let mut text = std::fs::read_to_string(&journal).unwrap();
    text.push_str(r#"{"key":"b.txt","hash":"sha256:0123"#);
    std::fs::write(&journal, &text).unwrap();

    let status = env.run(&["status", "--json"]);
    let health: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(health["data_files"], 2, "{health:#}");
    assert_eq!(
        health["unindexed_files"], 1,
        "status counts the journal's whole line and ignores the torn one"
    );

    let run = env
        .test()
        .args(&["--once", "--mode", "ingest", "--json"])
        .run();
    let ingest = run.action("ingest");
    assert_eq!(ingest["counts"]["unchanged"], 1, "{ingest:#}");
    assert_eq!(
        env.sent(),
        [bytes(&a), bytes(&b)],
        "a.txt is not sent again"
    );
    // The run walked all of data_dir, so it folded the journal into ingest_hash.json.
    assert!(!journal.exists(), "the journal is compacted away");
    let files = env.state_json("ingest_hash.json")["files"].clone();
    assert_eq!(files.as_object().unwrap().len(), 2, "{files:#}");
}

#[test]
fn issue_8_a_journal_line_appended_after_a_torn_one_is_read() {
    let env = TestEnv::new();
    env.rules(&["--"], "");
    env.data_file("a.txt", "alpha");
    env.test().args(&["--once", "--mode", "ingest"]).run();
    let journal = records_to_journal(&env);
    let whole = std::fs::read_to_string(&journal).unwrap();
    // A torn line, then a later process that appended after it.
    std::fs::write(&journal, format!("{{\"key\":\"zz\n{whole}")).unwrap();
    let ingest = env
        .test()
        .args(&["--once", "--mode", "ingest", "--json"])
        .run()
        .action("ingest");
    assert_eq!(ingest["counts"]["unchanged"], 1, "{ingest:#}");
    assert_eq!(env.calls().len(), 1);
}

#[test]
fn issue_11_summaries_count_truly_and_agree_in_number() {
    let env = TestEnv::new();
    env.rules(&["--fail", "bad", "--"], "");
    env.data_file("good.txt", "fine");
    env.test()
        .args(&["--once", "--mode", "ingest"])
        .stdout_has("sent 1 file in 1 batch: 1 done, 0 failed")
        .run();
    env.test()
        .args(&["--once", "--mode", "ingest"])
        .stdout_has("1 file, ingested (0 read)")
        .run();
    env.data_file("bad.txt", "broken");
    let failed = env
        .test()
        .args(&["--once", "--mode", "ingest", "--json"])
        .status(1)
        .run()
        .action("ingest");
    assert_eq!(failed["error"], "the ingest step failed on 1 file");
    // The failed file is not ingested: the summary says so, as status does.
    env.test()
        .args(&["--once", "--mode", "ingest"])
        .stdout_has("2 files: 1 ingested, 1 awaiting retry (1 read)")
        .run();
    env.test()
        .args(&["status"])
        .status(1)
        .stdout_has("2 files, 1 not yet indexed")
        .run();
}

#[test]
fn issue_11_known_content_alone_is_not_sent_0_files_in_0_batches() {
    let env = TestEnv::new();
    env.rules(&["--"], "skip_known_content = true\n");
    env.data_file("a.txt", "alpha");
    env.test().args(&["--once", "--mode", "ingest"]).run();
    env.data_file("copy.txt", "alpha");
    let run = env
        .test()
        .args(&["--once", "--mode", "ingest"])
        .stdout_has("recorded 1 file with known content")
        .run();
    let out = run.stdout();
    assert!(!out.contains("0 batches"), "{out}");
    assert!(!out.contains("sent 0"), "{out}");
}

#[test]
fn issue_11_files_still_being_written_are_not_called_ingested() {
    Test::new()
        .rules(&["--"], "settle = \"1h\"\n")
        .data("old.txt", "settled")
        .args(&["--once", "--mode", "ingest"])
        .run()
        .then()
        .write("Data/fresh.txt", "just written")
        .args(&["--once", "--mode", "ingest"])
        .stdout_has("2 files: 1 ingested, 1 still being written (fresh.txt: modified ")
        .run();
}

/// One run of ingest through the library, as the watcher makes it: `changed` paths under
/// data_dir are handed over relative to it, as the watcher hands them.
fn ingest_run(env: &TestEnv, held: &Held, changed: Option<Vec<PathBuf>>) -> RunRecord {
    let paths = Paths::load(&env.home().join("paths.json")).unwrap();
    let rules = Rules::load(&env.home().join("watch-rules.toml")).unwrap();
    let data = env.data();
    let changed = changed.map(|paths| {
        paths
            .into_iter()
            .map(|p| p.strip_prefix(&data).map(Path::to_path_buf).unwrap_or(p))
            .collect()
    });
    let request = Request {
        ingest_hints: WatcherHints {
            changed,
            manifest: held.clone(),
            ..WatcherHints::default()
        },
        ..Request::new(vec![Action::Ingest], Trigger::Event)
    };
    reconcile::run(&paths, &rules, &request)
}

fn counts(run: &RunRecord) -> Value {
    serde_json::to_value(&run.actions[0]).unwrap()["counts"].clone()
}

#[test]
fn issue_8_an_event_run_looks_only_at_the_changed_paths_and_journals_them() {
    let env = TestEnv::new();
    env.rules(&["--"], "");
    for i in 0..20 {
        env.data_file(format!("old/m{i}.txt"), &format!("memory {i}"));
    }
    let held = Held::default();
    let first = ingest_run(&env, &held, None);
    assert_eq!(counts(&first)["done"], 20);
    let manifest = std::fs::read(env.state("ingest_hash.json")).unwrap();

    // A new file, a new folder with a file, an excluded file, a file outside the globs, a
    // removed file, and a new file nobody announced.
    let new = env.data_file("new.txt", "new");
    let folder_file = env.data_file("folder/inner.txt", "inner");
    let hidden = env.data_file(".hidden.txt", "hidden");
    let other = env.data_file("notes.md", "not a memory");
    let gone = env.data().join("old/m3.txt");
    std::fs::remove_file(&gone).unwrap();
    let unannounced = env.data_file("unannounced.txt", "quiet");
    // A path that would leave data_dir is never looked at.
    let changed = vec![
        new.clone(),
        env.data().join("folder"),
        hidden,
        other,
        gone,
        new.clone(),
        PathBuf::from("../elsewhere.txt"),
    ];
    let run = ingest_run(&env, &held, Some(changed));
    let c = counts(&run);
    assert_eq!(c["scanned"], 2, "{c:#}");
    assert_eq!(c["removed"], 1, "{c:#}");
    assert_eq!(c["done"], 2, "{c:#}");
    let sent: Vec<Vec<u8>> = env.calls()[1].args.clone();
    assert_eq!(sent, [bytes(&folder_file), bytes(&new)]);
    assert!(
        run.actions[0].summary.starts_with("sent 2 files"),
        "{}",
        run.actions[0].summary
    );
    // Recording them appended to the journal; ingest_hash.json was not rewritten.
    assert_eq!(
        std::fs::read(env.state("ingest_hash.json")).unwrap(),
        manifest
    );
    // So was the removed file's mark as a pending removal (issue 17).
    let journal = std::fs::read_to_string(env.state("ingest_hash.json.journal")).unwrap();
    // After its first line, the stamp of the ingest_hash.json it applies to (issue 18).
    assert!(journal.starts_with(r#"{"manifest":{"inode":"#), "{journal}");
    assert_eq!(journal.lines().skip(1).count(), 3, "{journal}");
    assert!(
        journal
            .lines()
            .last()
            .unwrap()
            .starts_with(r#"{"key":"old/m3.txt","gone_at":"#),
        "{journal}"
    );

    // An event run for a path already recorded reads nothing and says so.
    let again = ingest_run(&env, &held, Some(vec![new]));
    assert_eq!(counts(&again)["unchanged"], 1);
    assert_eq!(
        again.actions[0].summary,
        "1 changed file, ingested (0 read)"
    );

    // The next full walk finds the unannounced file and folds the journal in.
    let full = ingest_run(&env, &held, None);
    assert_eq!(counts(&full)["done"], 1);
    assert_eq!(env.calls().last().unwrap().args, [bytes(&unannounced)]);
    assert!(!env.state("ingest_hash.json.journal").exists());
    let files = env.state_json("ingest_hash.json")["files"].clone();
    assert_eq!(files.as_object().unwrap().len(), 23);
}

#[test]
fn issue_8_an_event_run_leaves_failed_and_dead_files_to_their_tasks() {
    let env = TestEnv::new();
    env.rules(&["--fail", "bad", "--"], "");
    let bad = env.data_file("bad.txt", "broken");
    let held = Held::default();
    let first = ingest_run(&env, &held, Some(vec![bad.clone()]));
    assert_eq!(counts(&first)["failed"], 1);
    let tasks = env.state_json("task_queue.json")["tasks"].clone();
    assert_eq!(tasks[0]["id"], "ingest:bad.txt");
    // Heard again: the retry action owns it now.
    let again = ingest_run(&env, &held, Some(vec![bad.clone()]));
    assert_eq!(counts(&again)["awaiting_retry"], 1, "{:#}", counts(&again));
    assert_eq!(env.calls().len(), 1);
    // Dead: left alone until the file changes.
    let mut queue = env.state_json("task_queue.json");
    queue["tasks"][0]["status"] = json!("dead");
    env.state_file("task_queue.json", &queue);
    let dead = ingest_run(&env, &held, Some(vec![bad.clone()]));
    assert_eq!(counts(&dead)["given_up"], 1);
    env.rules(&["--"], "");
    env.data_file("bad.txt", "fixed");
    let fixed = ingest_run(&env, &held, Some(vec![bad]));
    assert_eq!(counts(&fixed)["done"], 1);
    assert_eq!(
        env.state_json("task_queue.json")["tasks"][0]["status"],
        "done"
    );
}

#[test]
fn issue_8_a_held_manifest_follows_a_one_shot_run_beside_it() {
    let env = TestEnv::new();
    env.rules(&["--"], "");
    env.data_file("a.txt", "a");
    let held = Held::default();
    ingest_run(&env, &held, None);
    // A `--once` beside the watcher records b.txt and rewrites ingest_hash.json.
    let b = env.data_file("b.txt", "b");
    env.test().args(&["--once", "--mode", "ingest"]).run();
    assert_eq!(env.calls().len(), 2);
    // The watcher's next run hears b.txt and must find it recorded, not send it again.
    let run = ingest_run(&env, &held, Some(vec![b]));
    assert_eq!(counts(&run)["unchanged"], 1, "{:#}", counts(&run));
    assert_eq!(env.calls().len(), 2);
}
