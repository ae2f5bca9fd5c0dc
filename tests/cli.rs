//! The command-line conventions people expect (issue 11): completions and a manual page,
//! `--color` and NO_COLOR, -v/-q, flags that make no sense together refused, a help with
//! examples and the environment, `--json` with a schema version.

use std::process::Command;

use crate::harness::Test;
use crate::util::*;

#[test]
fn issue_11_completions_and_the_manual_page_need_no_pipeline() {
    let env = TestEnv::new();
    for (args, needle) in [
        (&["completions", "bash"][..], "_memsched()"),
        (&["completions", "zsh"][..], "#compdef memsched"),
        (&["completions", "fish"][..], "complete -c memsched"),
        (&["man"][..], ".TH memsched"),
    ] {
        // From a folder with no paths.json in it or above, with none named.
        let outside = tempfile::tempdir().unwrap();
        let mut cmd = env.bare_command();
        cmd.current_dir(outside.path()).args(args);
        let out = cmd.output().unwrap();
        assert_exit(&out, 0);
        assert!(stdout(&out).contains(needle), "{args:?}: {}", stdout(&out));
    }
}

/// A manual page that cannot be written (a full disk: /dev/full) is an I/O failure, exit 1
/// as every other one, not bad usage (issue 16).
#[test]
fn issue_16_a_manual_page_that_cannot_be_written_is_an_io_failure_not_bad_usage() {
    let env = TestEnv::new();
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let mut cmd = env.bare_command();
    cmd.current_dir(env.data()).arg("man").stdout(full);
    let out = cmd.output().unwrap();
    assert_exit(&out, 1);
    assert!(
        stderr(&out)
            .contains("memsched: error: cannot write the manual page: No space left on device"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn issue_11_flags_that_make_no_sense_together_are_refused() {
    for (args, said) in [
        (
            &["--json"][..],
            "--json prints a run's record: use it with --once",
        ),
        (&["--trigger", "cron"][..], "--trigger <WHO>"),
        (&["--dry-run"][..], "--dry-run"),
        (
            &["--once", "--poll"][..],
            "the argument '--once' cannot be used with '--poll'",
        ),
        (
            &["--once", "check"][..],
            "--once is for runs and the watcher; it cannot be used with the 'check' subcommand",
        ),
        (
            &["--dry-run", "--once", "status"][..],
            "it cannot be used with the 'status' subcommand",
        ),
        (&["-v", "-q", "--once"][..], "cannot be used with"),
    ] {
        Test::new()
            .rules(&["--"], "")
            .args(args)
            .status(2)
            .stderr_has(said)
            .run();
    }
}

#[test]
fn issue_11_help_has_examples_and_the_environment() {
    let mut help = Test::new().args(&["--help"]);
    for needle in [
        "Examples:",
        "memsched --once --mode ingest --dry-run",
        "Environment:",
        "MEMSCHED_PATHS",
        "RUST_LOG",
        "NO_COLOR",
        "--color <WHEN>",
        "-v, --verbose",
        "-q, --quiet",
        "130 interrupted",
    ] {
        help = help.stdout_has(needle);
    }
    help.run();
}

/// Runs `memsched ARGS` in `env` on a pseudo-terminal (util-linux `script`), so stdout is a
/// terminal; its output.
fn on_terminal(env: &TestEnv, args: &str, extra_env: &[(&str, &str)]) -> String {
    let line = format!(
        "'{BIN}' --paths '{}' {args}",
        env.home().join("paths.json").display()
    );
    let mut cmd = Command::new("script");
    cmd.args(["-qec", &line, "/dev/null"])
        .env_remove("NO_COLOR")
        .envs(extra_env.iter().copied());
    let out = cmd.output().unwrap();
    stdout(&out)
}

#[test]
fn issue_11_no_color_and_color_never_turn_colour_off_on_a_terminal() {
    let env = TestEnv::new();
    env.rules(&["--"], "");
    let coloured = on_terminal(&env, "status", &[]);
    assert!(
        coloured.contains("\x1b["),
        "no colour on a terminal: {coloured:?}"
    );
    let plain = on_terminal(&env, "status", &[("NO_COLOR", "1")]);
    assert!(
        !plain.contains("\x1b["),
        "NO_COLOR=1 still colours: {plain:?}"
    );
    let never = on_terminal(&env, "status --color never", &[]);
    assert!(
        !never.contains("\x1b["),
        "--color never still colours: {never:?}"
    );
    // `always` colours even a pipe.
    env.test()
        .args(&["status", "--color", "always"])
        .stdout_has("\x1b[32;1mOK")
        .run();
}

#[test]
fn issue_11_verbose_shows_debug_lines_and_quiet_hides_warnings() {
    let env = TestEnv::new();
    env.rules(&["--"], "");
    env.test().args(&["--once", "-v"]).stderr_has("DEBUG").run();
    let run = env.test().args(&["--once", "-q"]).run();
    assert!(!run.stderr().contains("DEBUG"), "{}", run.stderr());
}

#[test]
fn issue_11_json_carries_a_version_and_the_same_keys_whatever_the_outcome() {
    let env = TestEnv::new();
    env.rules(&["--"], "");
    let nothing = env.test().args(&["--once", "--json"]).run().record();
    env.data_file("a.txt", "alpha");
    let ran = env.test().args(&["--once", "--json"]).run().record();
    assert_eq!(nothing["version"], 1);
    let keys = |v: &serde_json::Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&nothing), keys(&ran));
    let ingest = |v: &serde_json::Value| action(v, "ingest").clone();
    assert_eq!(ingest(&nothing)["outcome"], "nothing-to-do");
    assert_eq!(ingest(&ran)["outcome"], "ran");
    assert_eq!(keys(&ingest(&nothing)), keys(&ingest(&ran)));
    for sub in ["status", "check"] {
        let v = env.test().args(&[sub, "--json"]).run().record();
        assert_eq!(v["version"], 1, "{sub}");
    }
}
