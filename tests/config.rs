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
        .stderr_has("watch-rules.toml:3:1: unknown field `batchsize`")
        .stderr_has("; did you mean `batch_size`?")
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

#[test]
fn issue_11_check_fails_naming_a_command_that_cannot_be_found() {
    Test::new()
        .raw_rules(
            "[actions.ingest]\ncommand = [\"no-such-ingest-step\", \"{files}\"]\n\n[actions.watchdog]\ncommand = [\"./missing.py\"]\n",
        )
        .args(&["check"])
        .status(2)
        .stdout_has("  ingest    NOT FOUND: no-such-ingest-step is not found on PATH")
        .stderr_has("memsched: error: the ingest command \"no-such-ingest-step\" is not found on PATH")
        .stderr_has("memsched: error: the watchdog command \"./missing.py\" ({home}/./missing.py) does not exist")
        .run();
    // Found on PATH, it passes and says where.
    Test::new()
        .rules(
            &["--"],
            "[[rules]]\nname = \"m\"\nin = \"data\"\npaths = [\"**/*.txt\"]\nrun = [\"ingest\"]\n\
             [actions.retry]\ncommand = [\"true\", \"{task_id}\"]\n",
        )
        .args(&["check"])
        .stdout_has("  ingest    /")
        .stderr("")
        .run();
}

#[test]
fn issue_11_check_warns_about_upload_sources_no_rule_watches() {
    let env = TestEnv::new();
    let step = env.step_argv(&["--", "{path}"]);
    env.raw_rules(&format!(
        "[actions.upload]\ncommand = {step}\nremote = \"r:\"\nsources = [\"index/**\", \"Data/**/*.txt\"]\n"
    ));
    let run = env
        .test()
        .args(&["check"])
        .stderr_has("memsched: warning: upload source \"Data/**/*.txt\" lies in data_dir but no rule in \"data\" runs upload")
        .run();
    // index/** is watched by the watcher itself (issue 20 item 6): no warning for it.
    assert!(!run.stderr().contains("index/**"), "{}", run.stderr());
}

/// The README's cron line, as written, under cron's own environment.
#[test]
fn issue_11_the_readme_cron_line_works_as_written_and_keeps_failures() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let line = readme
        .lines()
        .find(|l| l.starts_with("*/10 * * * * "))
        .expect("the README has a cron line");
    let command = line.trim_start_matches("*/10 * * * * ");
    let env = TestEnv::new();
    env.rules(&["--fail", "bad", "--"], "");
    env.data_file("bad.txt", "no");
    // $HOME/memory is the pipeline; the binary is installed where the README says.
    let user = env.home().join("user");
    std::fs::create_dir_all(user.join(".cargo/bin")).unwrap();
    std::os::unix::fs::symlink(env.home(), user.join("memory")).unwrap();
    std::os::unix::fs::symlink(BIN, user.join(".cargo/bin/memsched")).unwrap();
    // cron runs `sh -c` with HOME, a minimal PATH and the user's home as working folder.
    let out = std::process::Command::new("/bin/sh")
        .args(["-c", command])
        .env_clear()
        .env("HOME", &user)
        .env("PATH", "/usr/bin:/bin")
        .env("SHELL", "/bin/sh")
        .current_dir(&user)
        .output()
        .unwrap();
    assert_exit(&out, 1);
    let err = std::fs::read_to_string(user.join("memory/memsched.err"))
        .expect("the failure reaches the file the cron line names");
    assert!(
        err.contains("memsched: error: ingest failed:") && err.contains("bad.txt"),
        "{err}"
    );
}

#[test]
fn issue_11_toml_errors_are_file_line_col_with_a_did_you_mean() {
    Test::new()
        .raw_rules("[actions.ingest]\ncomand = [\"i\", \"{files}\"]\n")
        .args(&["--once"])
        .status(2)
        .stderr("memsched: error: {home}/watch-rules.toml:2:1: unknown field `comand`, expected one of `command`, `timeout`, `include`, `exclude`, `batch_size`, `pass_files`, `resident`, `idle_exit`, `settle`, `skip_known_content`, `remove`, `max_remove`; did you mean `command`?\n")
        .run();
    Test::new()
        .raw_rules("[actions.ingest]\ncommand = [\"i\", \"{files}\"]\n[[rules]]\nname = \"r\"\nin = \"dat\"\npaths = [\"*\"]\nrun = [\"ingets\"]\n")
        .args(&["--once"])
        .status(2)
        .stderr_has("watch-rules.toml:5:6: unknown variant `dat`, expected `data` or `state`; did you mean `data`?\n")
        .run();
    Test::new()
        .raw_rules("[actions.ingest]\ncommand = [\"i\", \"{files}\"]\n[[rules]]\nname = \"r\"\nin = \"data\"\npaths = [\"*\"]\nrun = [\"ingets\"]\n")
        .args(&["--once"])
        .status(2)
        .stderr_has("watch-rules.toml:7:8: unknown action \"ingets\" in rule \"r\"; known: ingest, retry, upload, watchdog; did you mean \"ingest\"?\n")
        .run();
    // Broken syntax has the same form.
    Test::new()
        .raw_rules("[actions.ingest]\ncommand = [\"i\"\n")
        .args(&["--once"])
        .status(2)
        .stderr("memsched: error: {home}/watch-rules.toml:3:1: invalid array: expected `]`\n")
        .run();
}
