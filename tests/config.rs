//! paths.json and watch-rules.toml: discovery, errors that point at the text, `check`.

use pretty_assertions::assert_eq;

use crate::util::*;

#[test]
fn a_missing_paths_json_is_a_usage_error_with_a_hint() {
    let env = TestEnv::new();
    std::fs::remove_file(env.home().join("paths.json")).unwrap();
    let out = env.run(&["--once"]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(
        err.starts_with("memsched: error: no paths.json at "),
        "{err}"
    );
    assert!(err.contains("memsched: hint: pass --paths FILE"), "{err}");
}

#[test]
fn a_malformed_paths_json_names_line_and_column() {
    let env = TestEnv::new();
    env.write(
        "paths.json",
        "{\n  \"data_dir\": \"Data\",\n  \"state_dir\": 7\n}\n",
    );
    let out = env.run(&["--once"]);
    assert_exit(&out, 2);
    let want = format!(
        "memsched: error: {}:3:16: invalid type: integer `7`, expected a string\n",
        env.home().join("paths.json").display()
    );
    assert_eq!(stderr(&out), want);
}

#[test]
fn paths_json_is_found_through_the_environment() {
    let env = TestEnv::new();
    env.rules(&["--"], "");
    let out = std::process::Command::new(BIN)
        .args(["--once", "--mode", "ingest"])
        .current_dir(std::env::temp_dir())
        .env("MEMSCHED_PATHS", env.home().join("paths.json"))
        .output()
        .unwrap();
    assert_exit(&out, 0);
}

#[test]
fn rules_errors_point_at_file_line_and_column_and_exit_2() {
    let env = TestEnv::new();
    env.write(
        "watch-rules.toml",
        "[actions.ingest]\ncommand = [\"i\", \"{files}\"]\n\n[[rules]]\nname = \"r\"\nin = \"data\"\npaths = [\"**/*.txt\"]\nrun = [\"reindex\"]\n",
    );
    let out = env.run(&["--once"]);
    assert_exit(&out, 2);
    let want = format!(
        "memsched: error: {}:8:8: unknown action \"reindex\" in rule \"r\"; known: ingest, retry, upload, watchdog\n",
        env.home().join("watch-rules.toml").display()
    );
    assert_eq!(stderr(&out), want);

    env.write(
        "watch-rules.toml",
        "[actions.ingest]\ncommand = [\"i\", \"{files}\"]\nbatchsize = 3\n",
    );
    let out = env.run(&["check"]);
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("line 3, column 1"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("unknown field `batchsize`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_missing_rules_file_says_where_it_looked() {
    let env = TestEnv::new();
    let out = env.run(&["--once"]);
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("no rules file: looked for"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn actions_without_a_table_are_reported_as_not_configured() {
    let env = TestEnv::new();
    env.rules(&["--"], "");
    let out = env.run(&["--once", "--mode", "upload", "--json"]);
    assert_exit(&out, 0);
    let upload = action(&run_record(&out), "upload").clone();
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
    let env = TestEnv::new();
    env.rules(&["--"], "[[rules]]\nname = \"memories\"\nin = \"data\"\npaths = [\"**/*.txt\"]\nrun = [\"ingest\"]\n");
    let out = env.run(&["check"]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    assert!(
        text.contains(&format!("data_dir    {}  (exists)", env.data().display())),
        "{text}"
    );
    assert!(text.contains("task_queue"), "{text}");
    assert!(text.contains("retry     not configured"), "{text}");
    assert!(text.contains("memories"), "{text}");

    let out = env.run(&["check", "--json"]);
    assert_exit(&out, 0);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["actions"]["ingest"]["batch_size"], 64);
    assert_eq!(v["rules"][0]["run"][0], "ingest");
}

#[test]
fn help_lists_the_options_and_exit_statuses() {
    let out = std::process::Command::new(BIN)
        .arg("--help")
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let text = stdout(&out);
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
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
}
