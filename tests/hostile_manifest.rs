//! Issue 18, the manifest's share: a rewrite the stat cache cannot see (its mtime put
//! back), a script that replaced ingest_hash.json under the lock against an older journal,
//! a hard-linked twin, and the cost of making each batch's records durable.

use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use memsched::actions::ingest::WatcherHints;
use memsched::config::paths::Paths;
use memsched::config::rules::Rules;
use memsched::model::action::Action;
use memsched::model::trigger::Trigger;
use memsched::reconcile::{self, Request};
use memsched::run::report::RunRecord;
use memsched::state::ingest_hash::Held;

use crate::util::*;

const DEADLINE: Duration = Duration::from_secs(30);

/// Rewrites `path` in place with `text` (the same length) and puts its mtime back, as
/// `touch -d`, `os.utime` and rsync `--times` do: inode, size and mtime all as before.
fn rewrite_keeping_mtime(path: &Path, text: &str) {
    let before = std::fs::metadata(path).unwrap();
    assert_eq!(
        before.len(),
        text.len() as u64,
        "the test needs the same size"
    );
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.write_all_at(text.as_bytes(), 0).unwrap();
    file.set_modified(before.modified().unwrap()).unwrap();
    drop(file);
    let after = std::fs::metadata(path).unwrap();
    assert_eq!(
        (after.ino(), after.len(), after.mtime(), after.mtime_nsec()),
        (
            before.ino(),
            before.len(),
            before.mtime(),
            before.mtime_nsec()
        ),
        "the stat cache's fields must look unchanged"
    );
}

/// Rules for a watcher sending every .txt in data_dir to the recording step at once.
fn watcher_rules(env: &TestEnv) {
    let step = env.step_argv(&["--"]);
    env.raw_rules(&format!(
        "debounce = \"50ms\"\ntick = \"1h\"\n[actions.ingest]\ncommand = {step}\nsettle = \"0s\"\n\
         [[rules]]\nname = \"memories\"\nin = \"data\"\npaths = [\"**/*.txt\"]\nrun = [\"ingest\"]\n"
    ));
}

/// One run of ingest through the library, as the watcher makes it.
fn event_run(env: &TestEnv, changed: Vec<PathBuf>, closed: Vec<PathBuf>) -> RunRecord {
    let paths = Paths::load(&env.home().join("paths.json")).unwrap();
    let rules = Rules::load(&env.home().join("watch-rules.toml")).unwrap();
    let request = Request {
        ingest_hints: WatcherHints {
            changed: Some(changed),
            closed: closed.into_iter().collect(),
            manifest: Held::default(),
            ..WatcherHints::default()
        },
        ..Request::new(vec![Action::Ingest], Trigger::Event)
    };
    reconcile::run(&paths, &rules, &request)
}

#[test]
fn issue_18_a_rewrite_with_its_mtime_put_back_is_sent_by_a_one_shot_run() {
    let env = TestEnv::new();
    env.rules(&["--"], "");
    let file = env.data_file("a.txt", "alpha");
    env.test().args(&["--once", "--mode", "ingest"]).run();
    rewrite_keeping_mtime(&file, "omega");
    env.test()
        .args(&["--once", "--mode", "ingest"])
        .stdout_has("sent 1 file")
        .run();
    assert_eq!(env.sent(), [bytes(&file), bytes(&file)], "sent twice");
    let rec = &env.state_json("ingest_hash.json")["files"]["a.txt"];
    let ctime = std::fs::metadata(&file).unwrap();
    let want =
        (i128::from(ctime.ctime()) * 1_000_000_000 + i128::from(ctime.ctime_nsec())).to_string();
    assert_eq!(rec["ctime_ns"], json!(want), "{rec:#}");
}

#[test]
fn issue_18_the_watcher_sends_a_rewrite_with_its_mtime_put_back() {
    for how in [&[][..], &["--poll"][..]] {
        let env = TestEnv::new();
        watcher_rules(&env);
        let file = env.data_file("a.txt", "alpha");
        let w = env.watch(how, &[]);
        assert_eq!(env.sent(), [bytes(&file)], "{how:?}");
        rewrite_keeping_mtime(&file, "omega");
        wait_until(
            &format!("the rewrite reaches the step ({how:?})"),
            DEADLINE,
            &|| w.log(),
            || env.calls().len() == 2,
        );
    }
}

/// The change time of a rewrite is not always new (a coarse clock, a file system that
/// keeps none): a path whose writer the watcher heard close is read whatever its stat says.
#[test]
fn issue_18_an_event_run_reads_a_closed_file_whose_stat_matches_its_record() {
    let env = TestEnv::new();
    env.rules(&["--"], "");
    let file = env.data_file("a.txt", "omega");
    env.test().args(&["--once", "--mode", "ingest"]).run();
    // The record claims the file's current stat with older content: what a rewrite
    // within one tick of the change-time clock leaves.
    let mut doc = env.state_json("ingest_hash.json");
    let old = format!("sha256:{}", "0".repeat(64));
    doc["files"]["a.txt"]["hash"] = json!(old);
    env.state_file("ingest_hash.json", &doc);

    let heard = event_run(&env, vec![PathBuf::from("a.txt")], vec![]);
    assert_eq!(
        heard.actions[0].summary,
        "1 changed file, ingested (0 read)"
    );
    let closed = event_run(
        &env,
        vec![PathBuf::from("a.txt")],
        vec![PathBuf::from("a.txt")],
    );
    assert!(
        closed.actions[0].summary.starts_with("sent 1 file"),
        "{}",
        closed.actions[0].summary
    );
    assert_eq!(env.sent(), [bytes(&file), bytes(&file)]);
    // Closed with nothing changed: read, found as recorded, nothing to record.
    let again = event_run(
        &env,
        vec![PathBuf::from("a.txt")],
        vec![PathBuf::from("a.txt")],
    );
    assert_eq!(
        again.actions[0].summary,
        "1 changed file, ingested (1 read)"
    );
}

/// Records written before the change time was kept hold none: trusted as they were (an
/// upgrade reads none of 100,000 files again) and given the file's change time, so the
/// next rewrite is seen.
#[test]
fn issue_18_a_record_without_a_change_time_is_trusted_and_completed() {
    let env = TestEnv::new();
    env.rules(&["--"], "");
    let file = env.data_file("a.txt", "alpha");
    env.test().args(&["--once", "--mode", "ingest"]).run();
    let mut doc = env.state_json("ingest_hash.json");
    doc["files"]["a.txt"]
        .as_object_mut()
        .unwrap()
        .remove("ctime_ns");
    let at = doc["files"]["a.txt"]["ingested_at"].clone();
    env.state_file("ingest_hash.json", &doc);
    env.test()
        .args(&["--once", "--mode", "ingest"])
        .stdout_has("1 file, ingested (0 read)")
        .run();
    let rec = &env.state_json("ingest_hash.json")["files"]["a.txt"];
    assert!(rec["ctime_ns"].is_string(), "{rec:#}");
    assert_eq!(rec["ingested_at"], at, "completing it is no new ingest");
    rewrite_keeping_mtime(&file, "omega");
    env.test()
        .args(&["--once", "--mode", "ingest"])
        .stdout_has("sent 1 file")
        .run();
}

/// Writes `doc` as ingest_hash.json the way a careful script does: under `ingest.lock`,
/// to a temporary file renamed over it.
fn replace_manifest_under_the_lock(env: &TestEnv, doc: &serde_json::Value) {
    let lock = std::fs::File::options()
        .create(true)
        .append(true)
        .open(env.state("ingest.lock"))
        .unwrap();
    let held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).unwrap();
    let tmp = env.state("ingest_hash.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(doc).unwrap()).unwrap();
    std::fs::rename(&tmp, env.state("ingest_hash.json")).unwrap();
    drop(held);
}

#[test]
fn issue_18_a_manifest_a_script_replaced_under_the_lock_wins_over_an_older_journal() {
    let env = TestEnv::new();
    env.rules(&["--"], "");
    let a = env.data_file("a.txt", "alpha");
    env.test().args(&["--once", "--mode", "ingest"]).run();
    // b.txt is recorded by an event run: its record is in the journal only.
    let b = env.data_file("b.txt", "beta");
    let run = event_run(&env, vec![PathBuf::from("b.txt")], vec![]);
    assert!(run.actions[0].summary.starts_with("sent 1 file"));
    assert!(env.state("ingest_hash.json.journal").exists());
    // A script reads the latest records, forgets b.txt and a.txt's, and replaces the file.
    let mut doc = env.state_json("ingest_hash.json");
    doc["files"].as_object_mut().unwrap().remove("a.txt");
    replace_manifest_under_the_lock(&env, &doc);

    env.test()
        .args(&["--once", "--mode", "ingest"])
        .stdout_has("sent 2 files")
        .run();
    assert_eq!(
        env.sent(),
        [bytes(&a), bytes(&b), bytes(&a), bytes(&b)],
        "both forgotten records are sent again"
    );
    // The journal written since applies to the script's file: its lines are kept.
    let c = env.data_file("c.txt", "gamma");
    event_run(&env, vec![PathBuf::from("c.txt")], vec![]);
    let run = env
        .test()
        .args(&["--once", "--mode", "ingest"])
        .stdout_has("3 files, all ingested (0 read)")
        .run();
    drop(run);
    assert_eq!(env.sent().last(), Some(&bytes(&c)));
    let files = env.state_json("ingest_hash.json")["files"].clone();
    assert_eq!(files.as_object().unwrap().len(), 3, "{files:#}");
}

#[test]
fn issue_18_a_write_through_one_hard_link_sends_its_twin_too() {
    let env = TestEnv::new();
    watcher_rules(&env);
    let a = env.data_file("a.txt", "alpha");
    let b = env.data().join("b.txt");
    std::fs::hard_link(&a, &b).unwrap();
    let w = env.watch(&[], &[]);
    let mut first = env.sent();
    first.sort();
    assert_eq!(first, [bytes(&a), bytes(&b)], "the startup run sends both");
    // Written through a.txt: only a.txt is heard, but b.txt is the same file.
    std::fs::write(&a, "omega, longer").unwrap();
    wait_until("b.txt is sent again", DEADLINE, &|| w.log(), || {
        env.sent().iter().filter(|s| **s == bytes(&b)).count() == 2
    });
    assert_eq!(
        env.sent().iter().filter(|s| **s == bytes(&a)).count(),
        2,
        "{}",
        w.log()
    );
}
