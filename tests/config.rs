//! paths.json and watch-rules.toml: discovery, errors that point at the text, `check`.

use pretty_assertions::assert_eq;

use crate::harness::Test;
use crate::util::*;

#[test]
fn a_missing_paths_json_is_a_usage_error_with_a_hint() {
    let env = TestEnv::new();
    std::fs::remove_file(env.home().join("paths.json")).unwrap();
    let run = env
        .test()
        .args(&["--once"])
        .status(2)
        .stderr_has("memsched: hint: pass --paths FILE")
        .run();
    let err = run.stderr();
    assert!(
        err.starts_with("memsched: error: no paths.json at "),
        "{err}"
    );
}

#[test]
fn a_malformed_paths_json_names_line_and_column() {
    Test::new()
        .write(
            "paths.json",
            "{\n  \"data_dir\": \"Data\",\n  \"state_dir\": 7\n}\n",
        )
        .args(&["--once"])
        .status(2)
        .stderr("memsched: error: {home}/paths.json:3:16: invalid type: integer `7`, expected a string\n")
        .run();
}

#[test]
fn paths_json_is_found_through_the_environment() {
    Test::new()
        .rules(&["--"], "")
        .paths_from_env()
        .args(&["--once", "--mode", "ingest"])
        .run();
}

#[test]
fn rules_errors_point_at_file_line_and_column_and_exit_2() {
    let run = Test::new()
        .write(
            "watch-rules.toml",
            "[actions.ingest]\ncommand = [\"i\", \"{files}\"]\n\n[[rules]]\nname = \"r\"\nin = \"data\"\npaths = [\"**/*.txt\"]\nrun = [\"reindex\"]\n",
        )
        .args(&["--once"])
        .status(2)
        .stderr("memsched: error: {home}/watch-rules.toml:8:8: unknown action \"reindex\" in rule \"r\"; known: ingest, retry, upload, watchdog\n")
        .run();

    run.then()
        .write(
            "watch-rules.toml",
            "[actions.ingest]\ncommand = [\"i\", \"{files}\"]\nbatchsize = 3\n",
        )
        .args(&["check"])
        .status(2)
        .stderr_has("line 3, column 1")
        .stderr_has("unknown field `batchsize`")
        .run();
}

#[test]
fn a_missing_rules_file_says_where_it_looked() {
    Test::new()
        .args(&["--once"])
        .status(2)
        .stderr_has("no rules file: looked for")
        .run();
}

#[test]
fn actions_without_a_table_are_reported_as_not_configured() {
    let upload = Test::new()
        .rules(&["--"], "")
        .args(&["--once", "--mode", "upload", "--json"])
        .run()
        .action("upload");
    assert_eq!(upload["outcome"], "skipped");
    assert!(
        upload["summary"]
            .as_str()
            .unwrap()
            .starts_with("not configured: no [actions.upload] table")
    );
}

#[test]
fn check_prints_the_resolved_configuration() {
    let run = Test::new()
        .rules(&["--"], "[[rules]]\nname = \"memories\"\nin = \"data\"\npaths = [\"**/*.txt\"]\nrun = [\"ingest\"]\n")
        .args(&["check"])
        .stdout_has("data_dir    {home}/Data  (exists)")
        .stdout_has("task_queue")
        .stdout_has("retry     not configured")
        .stdout_has("memories")
        .run();

    let v = run.then().args(&["check", "--json"]).run().record();
    assert_eq!(v["actions"]["ingest"]["batch_size"], 64);
    assert_eq!(v["rules"][0]["run"][0], "ingest");
}

#[test]
fn help_lists_the_options_and_exit_statuses() {
    let mut help = Test::new().args(&["--help"]);
    for needle in [
        "--once",
        "--mode",
        "--dry-run",
        "--json",
        "--paths",
        "--rules",
        "check",
        "3 another process holds a lock",
    ] {
        help = help.stdout_has(needle);
    }
    help.run();
}
