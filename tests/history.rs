//! `memsched log` (issue 11): recent runs as a table, filters, one run in full, `--json`.

use crate::util::*;

/// A home with three recorded runs: ingest ran (2 files), nothing to do, ingest failed.
fn three_runs() -> TestEnv {
    let env = TestEnv::new();
    env.rules(&["--fail", "bad", "--"], "");
    env.data_file("a.txt", "alpha");
    env.data_file("b.txt", "beta");
    env.test().args(&["--once"]).run();
    env.test().args(&["--once", "--trigger", "cron"]).run();
    env.data_file("bad.txt", "nope");
    env.test().args(&["--once"]).status(1).run();
    env
}

#[test]
fn issue_11_log_shows_recent_runs_as_a_table() {
    let env = three_runs();
    let run = env
        .test()
        .args(&["log"])
        .stdout_has("   #  started                  trigger       took  retry")
        .stdout_has("ran 2 ok")
        .stdout_has("none")
        .stdout_has("FAILED 0 ok 1 bad")
        .stdout_has("(`memsched log N` shows run N in full)")
        .run();
    let rows: Vec<String> = run
        .stdout()
        .lines()
        .filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()))
        .map(str::to_owned)
        .collect();
    assert_eq!(rows.len(), 3, "{}", run.stdout());
    assert!(rows[1].contains(" cron "), "{rows:?}");
}

#[test]
fn issue_11_log_filters_by_action_and_outcome_and_limits() {
    let env = three_runs();
    let failed = env
        .test()
        .args(&["log", "--outcome", "failed", "--json"])
        .run()
        .record();
    assert_eq!(failed["version"], 1);
    let runs = failed["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["number"], 3);
    let ingest_ran = env
        .test()
        .args(&["history", "--action", "ingest", "--json"])
        .run()
        .record();
    let numbers: Vec<u64> = ingest_ran["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["number"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, [1, 3]);
    let last = env
        .test()
        .args(&["log", "-n", "1", "--json"])
        .run()
        .record();
    assert_eq!(last["runs"][0]["number"], 3);
}

#[test]
fn issue_11_log_shows_one_run_in_full_by_its_number() {
    let env = three_runs();
    env.test()
        .args(&["log", "3"])
        .stdout_has("run 3: manual run of retry, ingest, upload, watchdog")
        .stdout_has("      failed bad.txt: refused bad.txt")
        .stdout_has("      command python3")
        .run();
    let record = env.test().args(&["log", "1", "--json"]).run().record();
    assert_eq!(record["trigger"], "manual");
    env.test()
        .args(&["log", "9"])
        .status(2)
        .stderr_has("no run 9 in {home}/state/scheduler_log.json: it keeps runs 1 to 3")
        .run();
}
