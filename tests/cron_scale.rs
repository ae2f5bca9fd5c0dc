//! A cron line at scale (issue 19 item 7): an unchanged run costs about a walk, and one new
//! file costs its own record, not a rewrite of every record. A run started by a cron line
//! (`--trigger cron`) keeps the journal until it is older than `tick` (or large); any other
//! run that walks everything folds it as before.

use std::os::unix::fs::MetadataExt;

use crate::util::*;

/// (inode, mtime_ns, bytes) of ingest_hash.json: all three stay when it is not rewritten.
fn manifest_identity(env: &TestEnv) -> (u64, i64, Vec<u8>) {
    let path = env.state("ingest_hash.json");
    let meta = std::fs::metadata(&path).unwrap();
    let mtime = meta.mtime() * 1_000_000_000 + meta.mtime_nsec();
    (meta.ino(), mtime, std::fs::read(&path).unwrap())
}

fn journal(env: &TestEnv) -> Option<String> {
    std::fs::read_to_string(env.state("ingest_hash.json.journal")).ok()
}

#[test]
fn issue_19_a_cron_run_records_a_new_file_in_the_journal_and_folds_it_once_older_than_tick() {
    let env = TestEnv::new();
    env.rules(&["--"], "");
    for name in ["a.txt", "b.txt", "c.txt"] {
        env.data_file(name, name);
    }
    env.test().args(&["--once", "--mode", "ingest"]).run();
    assert_eq!(journal(&env), None, "a manual run folds as before");
    let before = manifest_identity(&env);

    env.data_file("d.txt", "new memory");
    let cron = ["--once", "--mode", "ingest", "--trigger", "cron"];
    env.test().args(&cron).stdout_has("1 done").run();
    assert_eq!(
        manifest_identity(&env),
        before,
        "ingest_hash.json was rewritten"
    );
    let lines = journal(&env).expect("the new record waits in the journal");
    assert!(
        lines.lines().next().unwrap().contains("\"since\":"),
        "{lines}"
    );
    assert!(lines.contains("d.txt"), "{lines}");
    // Everyone reads both: the file counts as indexed, and is not sent again.
    let status = env.test().args(&["status"]).run().stdout();
    assert!(status.contains("4 files, 0 not yet indexed"), "{status}");
    env.test().args(&cron).stdout_has("all ingested").run();
    assert_eq!(env.sent().len(), 4);

    // Once the journal is older than tick (15 minutes by default), the next cron run folds.
    let mut aged: Vec<String> = lines.lines().map(str::to_owned).collect();
    let mut stamp: serde_json::Value = serde_json::from_str(&aged[0]).unwrap();
    stamp["since"] = "2000-01-01T00:00:00.000Z".into();
    aged[0] = stamp.to_string();
    env.write("state/ingest_hash.json.journal", &(aged.join("\n") + "\n"));
    env.data_file("e.txt", "another");
    env.test().args(&cron).stdout_has("1 done").run();
    assert_eq!(journal(&env), None, "an old journal is folded");
    let manifest = env.state_json("ingest_hash.json").to_string();
    assert!(
        manifest.contains("d.txt") && manifest.contains("e.txt"),
        "{manifest}"
    );
}
