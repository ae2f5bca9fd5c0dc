//! The test builder: a pipeline home, one run of memsched in it, and the status and output
//! that run must end with, in the manner of just's tests/test.rs. A new test is three lines:
//!
//! ```text
//! Test::new().rules(&["--"], "").data("a.txt", "alpha")
//!     .args(&["--once", "--mode", "ingest"])
//!     .stdout_has("ingest    ran").run();
//! ```
//!
//! `run()` checks every expectation at once and on a mismatch prints each one that failed
//! beside both streams, framed. It returns the finished [`Run`], so the test can go on
//! inspecting the home (state files, calls of the recording step) or run again in it.

use std::ffi::OsStr;
use std::ops::Deref;
use std::process::Output;

use serde_json::Value;

use crate::util::{TestEnv, action, run_record, stderr, stdout};

/// `{home}` in expected output and in environment values stands for the pipeline home, so
/// messages that name files there can be written out whole.
const HOME: &str = "{home}";

/// Where a test runs: a home of its own, or one the test set up by hand and lends (a home
/// with a watcher running in it, or one it keeps paths into).
enum Home<'a> {
    Owned(TestEnv),
    Lent(&'a TestEnv),
}

impl Deref for Home<'_> {
    type Target = TestEnv;

    fn deref(&self) -> &TestEnv {
        match self {
            Home::Owned(env) => env,
            Home::Lent(env) => env,
        }
    }
}

/// What one stream must hold.
enum Expect {
    Exactly(String),
    Has(String),
}

/// A run of memsched still being described. Nothing runs until [`Test::run`].
#[must_use = "a Test does nothing until .run()"]
pub(crate) struct Test<'a> {
    home: Home<'a>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    paths_flag: bool,
    status: i32,
    stdout: Vec<Expect>,
    stderr: Vec<Expect>,
}

impl Test<'static> {
    /// A fresh home (see [`TestEnv::new`]); the run is expected to exit 0 unless told.
    pub(crate) fn new() -> Self {
        Test::in_home(Home::Owned(TestEnv::new()))
    }
}

impl TestEnv {
    /// A run in this home, which stays the caller's.
    pub(crate) fn test(&self) -> Test<'_> {
        Test::in_home(Home::Lent(self))
    }
}

impl<'a> Test<'a> {
    fn in_home(home: Home<'a>) -> Self {
        Test {
            home,
            args: Vec::new(),
            env: Vec::new(),
            paths_flag: true,
            status: 0,
            stdout: Vec::new(),
            stderr: Vec::new(),
        }
    }

    /// The rules file, as [`TestEnv::rules`] writes it.
    pub(crate) fn rules(self, step_args: &[&str], extra: &str) -> Self {
        self.home.rules(step_args, extra);
        self
    }

    /// The rules file, as given.
    pub(crate) fn raw_rules(self, text: &str) -> Self {
        self.home.raw_rules(text);
        self
    }

    /// The rules file, as [`TestEnv::retry_rules`] writes it.
    pub(crate) fn retry_rules(self, step_args: &[&str], extra: &str) -> Self {
        self.home.retry_rules(step_args, extra);
        self
    }

    /// A settled file in Data/.
    pub(crate) fn data(self, name: impl AsRef<OsStr>, text: &str) -> Self {
        self.home.data_file(name, text);
        self
    }

    /// Any file, relative to the home.
    pub(crate) fn write(self, rel: &str, text: &str) -> Self {
        self.home.write(rel, text);
        self
    }

    /// A JSON state file.
    pub(crate) fn state_file(self, name: &str, value: &Value) -> Self {
        self.home.state_file(name, value);
        self
    }

    /// Arguments after `--paths HOME/paths.json`; more calls append.
    pub(crate) fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| (*a).to_owned()));
        self
    }

    /// An environment variable for the run (`{home}` is replaced).
    pub(crate) fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Names paths.json through `MEMSCHED_PATHS` instead of `--paths`, from the working
    /// folder Data/ (where, without the variable, the home's paths.json above is found).
    pub(crate) fn paths_from_env(mut self) -> Self {
        self.paths_flag = false;
        self.env("MEMSCHED_PATHS", "{home}/paths.json")
    }

    /// The exit status the run must end with (0 unless told).
    pub(crate) fn status(mut self, code: i32) -> Self {
        self.status = code;
        self
    }

    /// Stdout must be exactly `text` (`{home}` is replaced).
    pub(crate) fn stdout(mut self, text: &str) -> Self {
        self.stdout.push(Expect::Exactly(text.to_owned()));
        self
    }

    /// Stdout must contain `text` (`{home}` is replaced); may be given many times.
    pub(crate) fn stdout_has(mut self, text: &str) -> Self {
        self.stdout.push(Expect::Has(text.to_owned()));
        self
    }

    /// Stderr must be exactly `text` (`{home}` is replaced).
    pub(crate) fn stderr(mut self, text: &str) -> Self {
        self.stderr.push(Expect::Exactly(text.to_owned()));
        self
    }

    /// Stderr must contain `text` (`{home}` is replaced); may be given many times.
    pub(crate) fn stderr_has(mut self, text: &str) -> Self {
        self.stderr.push(Expect::Has(text.to_owned()));
        self
    }

    /// Runs memsched and checks the status and both streams, failing with every mismatch.
    #[track_caller]
    pub(crate) fn run(self) -> Run<'a> {
        let home = self.home.home().display().to_string();
        let fill = |s: &str| s.replace(HOME, &home);
        let mut cmd = if self.paths_flag {
            self.home.command(&[])
        } else {
            let mut cmd = self.home.bare_command();
            cmd.current_dir(self.home.data());
            cmd
        };
        cmd.args(&self.args);
        for (key, value) in &self.env {
            cmd.env(key, fill(value));
        }
        let output = cmd.output().unwrap();

        let mut problems = Vec::new();
        if output.status.code() != Some(self.status) {
            problems.push(format!(
                "status: expected {}, got {}",
                self.status, output.status
            ));
        }
        for (name, expects, actual) in [
            ("stdout", &self.stdout, stdout(&output)),
            ("stderr", &self.stderr, stderr(&output)),
        ] {
            for expect in expects {
                match expect {
                    Expect::Exactly(want) if fill(want) != actual => {
                        problems.push(format!("{name}: expected exactly\n{}", frame(&fill(want))));
                    }
                    Expect::Has(want) if !actual.contains(&fill(want)) => {
                        problems.push(format!(
                            "{name}: expected to contain\n{}",
                            frame(&fill(want))
                        ));
                    }
                    _ => {}
                }
            }
        }
        assert!(
            problems.is_empty(),
            "memsched {}\n{}\n--- stdout\n{}--- stderr\n{}--- end",
            self.args.join(" "),
            problems.join("\n"),
            stdout(&output),
            stderr(&output)
        );
        Run {
            home: self.home,
            output,
        }
    }
}

/// Expected text between markers, so leading and trailing whitespace and newlines show.
fn frame(text: &str) -> String {
    format!(">>>{text}<<<")
}

/// A run that met its expectations, with the home it ran in.
pub(crate) struct Run<'a> {
    home: Home<'a>,
    output: Output,
}

impl<'a> Run<'a> {
    /// The home, for state files and calls of the recording step.
    pub(crate) fn env(&self) -> &TestEnv {
        &self.home
    }

    pub(crate) fn stdout(&self) -> String {
        stdout(&self.output)
    }

    pub(crate) fn stderr(&self) -> String {
        stderr(&self.output)
    }

    /// The `--json` run record.
    #[track_caller]
    pub(crate) fn record(&self) -> Value {
        run_record(&self.output)
    }

    /// The report of one action in the `--json` run record.
    #[track_caller]
    pub(crate) fn action(&self, name: &str) -> Value {
        action(&self.record(), name).clone()
    }

    /// Another run in the same home, with expectations of its own.
    pub(crate) fn then(self) -> Test<'a> {
        Test::in_home(self.home)
    }
}

#[test]
fn a_run_that_meets_its_expectations_hands_back_its_home_for_another() {
    let run = Test::new()
        .rules(&["--"], "")
        .data("a.txt", "alpha")
        .args(&["--once", "--mode", "ingest"])
        .stdout_has("ingest    ran")
        .run();
    assert_eq!(run.env().calls().len(), 1);
    let run = run.then().args(&["--once", "--json"]).run();
    assert_eq!(run.action("ingest")["outcome"], "nothing-to-do");
}

#[test]
fn exact_output_is_compared_whole() {
    Test::new()
        .args(&["--version"])
        .stdout(&format!("memsched {}\n", env!("CARGO_PKG_VERSION")))
        .stderr("")
        .run();
}

#[test]
#[should_panic(expected = "status: expected 3, got exit status: 0")]
fn a_wrong_expected_status_fails_naming_both() {
    Test::new()
        .rules(&["--"], "")
        .args(&["--once"])
        .status(3)
        .run();
}

#[test]
#[should_panic(expected = "stderr: expected exactly\n>>>nothing<<<")]
fn a_wrong_expected_stream_fails_showing_what_was_expected() {
    Test::new()
        .args(&["--once"])
        .status(2)
        .stderr("nothing")
        .run();
}
