//! What a daily user trips on (issue 20 item 14): each small lie or silent no-op the issue
//! saw, through the real binary.

use std::time::Duration;

use crate::util::*;

const DEADLINE: Duration = Duration::from_secs(30);

/// `--mode ingest,upload` is what people type; it means `--mode ingest --mode upload`.
#[test]
fn issue_20_modes_may_be_given_as_one_comma_list() {
    let env = TestEnv::new();
    env.rules(&["--"], "");
    env.data_file("a.txt", "a");
    let record = env
        .test()
        .args(&["--once", "--mode", "ingest,watchdog", "--json"])
        .run()
        .record();
    assert_eq!(action(&record, "ingest")["outcome"], "ran", "{record:#}");
    assert_eq!(record["modes"], serde_json::json!(["ingest", "watchdog"]));
}

/// A negative weight would sort a step below every unweighted one without a word; the
/// rules say what a weight is instead.
#[test]
fn issue_20_a_negative_retry_weight_is_refused_where_it_is_written() {
    TestEnv::new()
        .raw_rules(
            "[actions.retry]\ncommand = [\"true\", \"{task_id}\"]\nweights = { ingest = -5 }\n",
        )
        .test()
        .args(&["check"])
        .status(2)
        .stderr_has(
            "watch-rules.toml:3:22: weights.ingest = -5 is out of range: a weight is 0 or more",
        )
        .run();
}

/// `debounce = "1m"` alone: the error is about the key the user wrote, and says which
/// default it met.
#[test]
fn issue_20_a_long_debounce_names_itself_and_the_max_wait_default() {
    TestEnv::new()
        .raw_rules("debounce = \"1m\"\n[actions.ingest]\ncommand = [\"true\", \"{files}\"]\n")
        .test()
        .args(&["check"])
        .status(2)
        .stderr_has("watch-rules.toml:1:12: debounce (1m) is longer than max_wait, which is 10s by default: set max_wait too (at least 1m)")
        .run();
}

/// Written by the user, max_wait is the one to blame, where it is written.
#[test]
fn issue_20_a_short_max_wait_the_user_wrote_is_blamed_where_it_is() {
    TestEnv::new()
        .raw_rules("debounce = \"2s\"\nmax_wait = \"1s\"\n[actions.ingest]\ncommand = [\"true\", \"{files}\"]\n")
        .test()
        .args(&["check"])
        .status(2)
        .stderr_has("watch-rules.toml:2:12: max_wait must be at least debounce (2s), found 1s")
        .run();
}

/// A degraded watchdog is painted as a warning, not green like a clean run, in the run's
/// summary and in `log`; and `status` counts refused uploads on its uploads line.
#[test]
fn issue_20_degraded_is_yellow_and_status_counts_refused_uploads() {
    let env = TestEnv::new();
    env.raw_rules("[actions.watchdog]\n");
    env.state_file(
        "upload_log.json",
        &serde_json::json!({"uploads": [
            {"path": "Data/a.txt", "status": "refused", "error": "refused: starts with '-'"},
            {"path": "Data/b.txt", "status": "uploaded"},
        ]}),
    );
    let run = env
        .test()
        .args(&["--once", "--color", "always"])
        .run()
        .stdout();
    let line = run
        .lines()
        .find(|l| l.trim_start().starts_with("watchdog"))
        .unwrap();
    assert!(line.contains("\x1b[33m"), "{line:?}");
    assert!(line.contains("status degraded"), "{line:?}");

    let log = env
        .test()
        .args(&["log", "--color", "always"])
        .run()
        .stdout();
    let row = log.lines().nth(1).unwrap();
    assert!(row.contains("\x1b[33mran degraded"), "{row:?}");

    let status = env.test().args(&["status"]).status(1).run().stdout();
    assert!(
        status.contains(
            "  uploads    0 outstanding (0 failed), 0 given up, 0 skipped, 1 refused, 1 uploaded"
        ),
        "{status}"
    );
}

/// paths.json is shared with the rest of the pipeline, so a key memsched does not know is
/// not an error; but one a typo away from a key it reads (`data_dri`), or no data_dir at
/// all, or a data_dir that does not exist, is worth a warning from `check`.
#[test]
fn issue_20_check_warns_of_a_near_miss_key_and_a_missing_data_dir_in_paths_json() {
    let env = TestEnv::new();
    env.rules(&["--"], "");
    env.write(
        "paths.json",
        r#"{"data_dri": "Memories", "state_dir": "state", "other_tool": 1}"#,
    );
    env.test()
        .args(&["check"])
        .stderr_has("memsched: warning: paths.json has the key \"data_dri\", which memsched does not read; did you mean \"data_dir\"?")
        .stderr_has("memsched: warning: paths.json gives no data_dir: memsched watches {home}/Data, the default")
        .run();
    env.write(
        "paths.json",
        r#"{"data_dir": "Nope", "state_dir": "state"}"#,
    );
    let out = env
        .test()
        .args(&["check"])
        .stderr_has("memsched: warning: data_dir {home}/Nope does not exist: nothing can be ingested until it does")
        .run()
        .stderr();
    assert!(!out.contains("other_tool"), "{out}");
    let status = env.test().args(&["status"]).status(1).run().stdout();
    assert!(
        status.contains("  data       not checked: data_dir")
            && status.contains("Nope does not exist"),
        "{status}"
    );
}

/// A rules file that does not load is why data is not checked, not "ingest not configured".
#[test]
fn issue_20_status_says_data_is_not_checked_because_the_rules_do_not_load() {
    let env = TestEnv::new();
    env.raw_rules("[actions.ingest]\ncomand = 1\n");
    let status = env.test().args(&["status"]).status(1).run().stdout();
    assert!(
        status.contains("  data       not checked: the rules do not load"),
        "{status}"
    );
}

/// `check --json` is read by scripts: an invalid configuration is a JSON document on
/// stdout too (with the error), beside the message on stderr and exit 2.
#[test]
fn issue_20_check_json_reports_an_invalid_configuration_on_stdout() {
    let env = TestEnv::new();
    env.raw_rules("[actions.ingest]\ncomand = 1\n");
    let out = env
        .test()
        .args(&["check", "--json"])
        .status(2)
        .stderr_has("unknown field `comand`")
        .run()
        .stdout();
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["ok"], false, "{doc:#}");
    assert!(
        doc["error"]
            .as_str()
            .unwrap()
            .contains("unknown field `comand`"),
        "{doc:#}"
    );
    assert_eq!(doc["exit"], 2, "{doc:#}");
}

/// `--json` where it means nothing is refused, not silently ignored; where a subcommand
/// writes something, `--json` says what.
#[test]
fn issue_20_json_is_refused_where_it_means_nothing_and_honoured_by_autostart() {
    let env = TestEnv::new();
    env.test()
        .args(&["completions", "bash", "--json"])
        .status(2)
        .stderr_has("--json has no meaning for 'completions'")
        .run();
    env.rules(&["--"], "");
    let out = env
        .test()
        .args(&["autostart", "enable", "--json"])
        .run()
        .stdout();
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        doc["done"][0].as_str().unwrap().contains("memsched"),
        "{doc:#}"
    );
    let out = env
        .test()
        .args(&["autostart", "disable", "--json"])
        .run()
        .stdout();
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["done"].as_array().unwrap().len(), 1, "{doc:#}");
}

/// `--once` right after a save: the summary names the file still being written and how
/// long it waits, not only a count.
#[test]
fn issue_20_once_names_the_file_still_being_written_and_its_wait() {
    let env = TestEnv::new();
    env.rules(&["--"], "settle = \"1h\"\n");
    std::fs::write(env.data().join("fresh.txt"), "just saved").unwrap();
    let out = env
        .test()
        .args(&["--once", "--mode", "ingest"])
        .run()
        .stdout();
    assert!(
        out.contains("1 still being written (fresh.txt: modified ")
            && out.contains("waits until it is 1h old"),
        "{out}"
    );
}

/// As git and cargo find their files: from a folder inside the pipeline home (Data/ or
/// below), with no --paths and no MEMSCHED_PATHS, memsched finds the home's paths.json.
#[test]
fn issue_20_paths_json_is_found_in_the_folders_above() {
    let env = TestEnv::new();
    env.rules(&["--"], "");
    env.data_file("notes/a.txt", "a");
    let mut cmd = env.bare_command();
    cmd.current_dir(env.data().join("notes"))
        .args(["--once", "--mode", "ingest", "--json"]);
    let out = cmd.output().unwrap();
    assert_exit(&out, 0);
    let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(action(&record, "ingest")["counts"]["done"], 1, "{record:#}");
    assert_eq!(env.calls().len(), 1);
}

/// The index written as ingest writes it (a temporary file renamed into place) wakes upload
/// as the file it is: the kernel said it is no folder, so the run's woken_by does not call
/// the temporary file a "new folder".
#[test]
fn issue_20_a_temporary_file_renamed_into_the_sources_is_no_new_folder() {
    let env = TestEnv::new();
    let upload = env.step_argv_raw(&["--tag", "upload", "--", "{path}"]);
    env.raw_rules(&format!(
        "debounce = \"100ms\"\n[actions.upload]\ncommand = {upload}\nsources = [\"index/*.json\"]\n"
    ));
    std::fs::create_dir_all(env.home().join("index")).unwrap();
    let w = env.watch(&[], &[]);
    wait_until("the startup run is recorded", DEADLINE, &|| w.log(), || {
        !env.runs().is_empty()
    });
    let tmp = env.home().join("index/.abc.tmp");
    std::fs::write(&tmp, "{}").unwrap();
    std::fs::rename(&tmp, env.home().join("index/abc.json")).unwrap();
    wait_until("the index is uploaded", DEADLINE, &|| w.log(), || {
        env.calls()
            .iter()
            .any(|c| c.tag.as_deref() == Some("upload"))
    });
    wait_until("the upload run is recorded", DEADLINE, &|| w.log(), || {
        env.runs().iter().any(|r| r["trigger"] == "event")
    });
    let woken: Vec<String> = env
        .runs()
        .iter()
        .filter(|r| r["trigger"] == "event")
        .flat_map(|r| r["woken_by"].as_array().unwrap().clone())
        .map(|w| w.as_str().unwrap().to_owned())
        .collect();
    assert!(
        woken.iter().any(|w| w.contains("index/abc.json")),
        "{woken:?}"
    );
    assert!(!woken.iter().any(|w| w.contains("new folder")), "{woken:?}");
}

/// Times meant for people are local (TZ, else /etc/localtime) and name their zone; the
/// state files keep UTC.
#[test]
fn issue_20_people_read_local_times_the_files_keep_utc() {
    let env = TestEnv::new();
    env.rules(&["--"], "");
    env.test().args(&["--once"]).run();
    let status = env
        .test()
        .args(&["status"])
        .env("TZ", "Asia/Kolkata")
        .run()
        .stdout();
    let first = status.lines().next().unwrap();
    assert!(first.contains(" IST)"), "{first}");
    let log = env
        .test()
        .args(&["log"])
        .env("TZ", "Asia/Kolkata")
        .run()
        .stdout();
    let mut lines = log.lines();
    assert!(lines.next().unwrap().contains("  started  "), "{log}");
    assert!(lines.next().unwrap().contains(" IST  manual"), "{log}");
    let record = &env.runs()[0];
    assert!(
        record["started_at"].as_str().unwrap().ends_with('Z'),
        "{record:#}"
    );
}

/// A state file that does not parse is named once, with its 1-based line and column, not
/// "does not parse: …: does not parse".
#[test]
fn issue_20_a_state_file_parse_error_says_it_once_with_its_line_and_column() {
    let env = TestEnv::new();
    env.raw_rules("[actions.watchdog]\n");
    env.write("state/task_queue.json", "{\"tasks\": [\n  {\"id\": 1,}\n]}");
    let status = env.test().args(&["status"]).status(1).run().stdout();
    let problem = status
        .lines()
        .find(|l| l.contains("task_queue.json"))
        .unwrap();
    assert_eq!(problem.matches("does not parse").count(), 1, "{problem}");
    assert!(problem.contains("task_queue.json:2:12: "), "{problem}");
}

/// A task that dies in a retry run refreshes the health at once (watchdog_state.json and
/// the watchdog's notification), not at the next tick an hour away (issue 20 item 10).
#[test]
fn issue_20_a_task_dying_runs_the_watchdog_at_once() {
    let env = TestEnv::new();
    let retry = env.step_argv_raw(&["--exit", "1", "--", "{task_id}"]);
    env.raw_rules(&format!(
        "tick = \"1h\"\n[actions.retry]\ncommand = {retry}\nmax_attempts = 1\n[actions.watchdog]\n"
    ));
    let soon = std::time::SystemTime::now() + Duration::from_secs(2);
    let soon = jiff::Timestamp::try_from(soon).unwrap().to_string();
    env.state_file(
        "task_queue.json",
        &serde_json::json!({"tasks": [{"id": "t1", "step": "index", "status": "failed",
            "attempts": 0, "next_attempt_at": soon}]}),
    );
    let w = env.watch(&[], &[]);
    wait_until(
        "the startup run's health is written",
        DEADLINE,
        &|| w.log(),
        || env.state("watchdog_state.json").exists(),
    );
    assert_eq!(
        env.state_json("watchdog_state.json")["dead_tasks"],
        serde_json::json!([])
    );
    wait_until(
        "the dead task reaches the health",
        DEADLINE,
        &|| w.log(),
        || env.state_json("watchdog_state.json")["dead_tasks"] == serde_json::json!(["t1"]),
    );
}

fn ago(secs: u64) -> String {
    let at = std::time::SystemTime::now() - Duration::from_secs(secs);
    jiff::Timestamp::try_from(at).unwrap().to_string()
}

/// Done tasks pile up (43 after one afternoon): `tasks prune --older-than AGE` clears the
/// old ones under the queue's lock, and `done_keep` in `[actions.retry]` does it at every
/// retry run. Only done tasks go, and only those older than the age.
#[test]
fn issue_20_done_tasks_older_than_an_age_are_pruned_by_hand_or_by_done_keep() {
    let queue = || {
        serde_json::json!({"tasks": [
            {"id": "old", "step": "index", "status": "done", "updated_at": ago(7200)},
            {"id": "new", "step": "index", "status": "done", "updated_at": ago(600)},
            {"id": "f", "step": "index", "status": "failed", "attempts": 9, "max_attempts": 9, "updated_at": ago(7200)},
            {"id": "timeless", "step": "index", "status": "done"},
        ]})
    };
    let ids = |env: &TestEnv| -> Vec<String> {
        env.state_json("task_queue.json")["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let env = TestEnv::new();
    env.raw_rules("[actions.retry]\ncommand = [\"true\", \"{task_id}\"]\n");
    env.state_file("task_queue.json", &queue());
    env.test()
        .args(&["tasks", "prune", "--older-than", "1h"])
        .stdout("pruned 1 done task older than 1h\n")
        .run();
    assert_eq!(ids(&env), ["new", "f", "timeless"]);

    let env = TestEnv::new();
    env.raw_rules("[actions.retry]\ncommand = [\"true\", \"{task_id}\"]\ndone_keep = \"1h\"\n");
    env.state_file("task_queue.json", &queue());
    let out = env
        .test()
        .args(&["--once", "--mode", "retry"])
        .run()
        .stdout();
    assert!(
        out.contains("pruned 1 done task older than done_keep (1h)"),
        "{out}"
    );
    assert_eq!(ids(&env), ["new", "f", "timeless"]);
}

/// The other way a task dies: ingest's failure used its last attempt, and retry (woken when
/// the task falls due, at once with `initial = "0s"`) finds it exhausted and marks it dead
/// without running it. The health is refreshed then too.
#[test]
fn issue_20_a_task_found_out_of_attempts_runs_the_watchdog_at_once() {
    let env = TestEnv::new();
    let step = env.step_argv(&["--fail", "bad", "--"]);
    env.raw_rules(&format!(
        "tick = \"1h\"\ndebounce = \"100ms\"\n[actions.ingest]\ncommand = {step}\nsettle = \"0s\"\n\
         [actions.retry]\ncommand = [\"false\", \"{{task_id}}\"]\nmax_attempts = 1\nbackoff = {{ initial = \"0s\" }}\n[actions.watchdog]\n\
         [[rules]]\nname = \"m\"\nin = \"data\"\npaths = [\"**/*.txt\"]\nrun = [\"ingest\"]\n"
    ));
    let w = env.watch(&[], &[]);
    wait_until(
        "the startup run's health is written",
        DEADLINE,
        &|| w.log(),
        || env.state("watchdog_state.json").exists(),
    );
    env.write("Data/bad.txt", "will fail");
    wait_until(
        "the dead task reaches the health",
        DEADLINE,
        &|| w.log(),
        || {
            env.state_json("watchdog_state.json")["dead_tasks"]
                == serde_json::json!(["ingest:bad.txt"])
        },
    );
}
