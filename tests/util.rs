//! The pipeline home: a `TestEnv` per test (a temp home with paths.json, a Data folder, a
//! rules file and a recording step), the watcher guard, and helpers to run the real binary.
//! Tests describe their runs with the builder in harness.rs.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use serde_json::Value;

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_memsched");

/// A temp pipeline home. Dropped with the test.
pub(crate) struct TestEnv {
    dir: tempfile::TempDir,
}

/// One call of the recording step.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub(crate) args: Vec<Vec<u8>>,
    pub(crate) stdin: Vec<u8>,
    pub(crate) env: Value,
    pub(crate) cwd: PathBuf,
    /// What `--tag` named, telling one configured step's calls from another's.
    pub(crate) tag: Option<String>,
}

impl TestEnv {
    /// A home with paths.json (`Data`, state in `state/`) and an empty Data folder.
    pub(crate) fn new() -> TestEnv {
        let dir = tempfile::Builder::new()
            .prefix("memsched-test-")
            .tempdir()
            .unwrap();
        let env = TestEnv { dir };
        std::fs::create_dir_all(env.data()).unwrap();
        env.write(
            "paths.json",
            r#"{"data_dir": "Data", "state_dir": "state", "other_tool": {"keep": true}}"#,
        );
        env
    }

    pub(crate) fn home(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn data(&self) -> PathBuf {
        self.home().join("Data")
    }

    pub(crate) fn state(&self, name: &str) -> PathBuf {
        self.home().join("state").join(name)
    }

    pub(crate) fn log_dir(&self) -> PathBuf {
        self.home().join("calls")
    }

    /// Writes a file relative to the home.
    pub(crate) fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.home().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    /// The rules file: the recording step as ingest (with `step_args`; a final `--` is
    /// followed by `{files}`), plus
    /// `extra` TOML, with `settle = "0s"` unless `extra` has a settle of its own.
    pub(crate) fn rules(&self, step_args: &[&str], extra: &str) -> &TestEnv {
        let argv = self.step_argv(step_args);
        let settle = if extra.contains("settle") {
            ""
        } else {
            "settle = \"0s\"\n"
        };
        let text = format!("[actions.ingest]\ncommand = {argv}\n{settle}{extra}");
        self.write("watch-rules.toml", &text);
        self
    }

    /// Writes the rules file as given.
    pub(crate) fn raw_rules(&self, text: &str) -> &TestEnv {
        self.write("watch-rules.toml", text);
        self
    }

    /// The rules file with a `[actions.retry]` table running the recording step with
    /// `step_args`, then `-- {task_id}`, plus `extra` lines for that table.
    pub(crate) fn retry_rules(&self, step_args: &[&str], extra: &str) -> &TestEnv {
        let mut step = step_args.to_vec();
        step.extend(["--", "{task_id}"]);
        let command = self.step_argv_raw(&step);
        self.raw_rules(&format!("[actions.retry]\ncommand = {command}\n{extra}"))
    }

    /// A JSON state file written as given.
    pub(crate) fn state_file(&self, name: &str, value: &Value) -> PathBuf {
        self.write(
            &format!("state/{name}"),
            &serde_json::to_string_pretty(value).unwrap(),
        )
    }

    /// The TOML argument vector running the recording step, exactly `step_args` after the
    /// log folder.
    pub(crate) fn step_argv_raw(&self, step_args: &[&str]) -> String {
        let step = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/steps/record.py");
        let mut argv = vec![
            "python3".to_owned(),
            step.display().to_string(),
            self.log_dir().display().to_string(),
        ];
        argv.extend(step_args.iter().map(|s| (*s).to_owned()));
        serde_json::to_string(&argv).unwrap()
    }

    /// The TOML argument vector running the recording step; a final `--` is followed by
    /// `{files}`.
    pub(crate) fn step_argv(&self, step_args: &[&str]) -> String {
        let mut args = step_args.to_vec();
        if args.last() == Some(&"--") {
            args.push("{files}");
        }
        self.step_argv_raw(&args)
    }

    /// A data file (name as raw bytes), made to look settled (modified an hour ago).
    pub(crate) fn data_file(&self, name: impl AsRef<OsStr>, text: &str) -> PathBuf {
        let path = self.data().join(name.as_ref());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        set_old(&path);
        path
    }

    /// Runs memsched with `--paths` set to this env's paths.json.
    pub(crate) fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut cmd = self.bare_command();
        cmd.arg("--paths").arg(self.home().join("paths.json"));
        cmd.args(args);
        cmd
    }

    /// memsched in this home, with HOME and XDG_CONFIG_HOME here and no `--paths`, no
    /// `MEMSCHED_PATHS` and no `RUST_LOG` from the caller.
    pub(crate) fn bare_command(&self) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.current_dir(self.home());
        cmd.env("HOME", self.home())
            .env("XDG_CONFIG_HOME", self.home().join(".config"))
            .env_remove("MEMSCHED_PATHS")
            .env_remove("RUST_LOG");
        cmd
    }

    /// Every call of the recording step so far, oldest first.
    pub(crate) fn calls(&self) -> Vec<Call> {
        let Ok(entries) = std::fs::read_dir(self.log_dir()) else {
            return Vec::new();
        };
        let mut names: Vec<PathBuf> = entries
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension() == Some(OsStr::new("json")))
            .collect();
        names.sort();
        names
            .into_iter()
            .map(|p| {
                let v: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
                Call {
                    args: v["args"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|a| unhex(a.as_str().unwrap()))
                        .collect(),
                    stdin: unhex(v["stdin"].as_str().unwrap()),
                    env: v["env"].clone(),
                    cwd: PathBuf::from(v["cwd"].as_str().unwrap()),
                    tag: v["tag"].as_str().map(str::to_owned),
                }
            })
            .collect()
    }

    /// Every argument the step was given, over all calls.
    pub(crate) fn sent(&self) -> Vec<Vec<u8>> {
        self.calls().into_iter().flat_map(|c| c.args).collect()
    }

    /// A state file, parsed.
    pub(crate) fn state_json(&self, name: &str) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.state(name)).unwrap()).unwrap()
    }
}

/// A running `memsched` watcher, killed when dropped. Its stderr (the log, at debug level)
/// goes to `watcher.log` in the home.
pub(crate) struct Watcher {
    child: std::process::Child,
    log: PathBuf,
}

impl Watcher {
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the watcher to exit; its exit status.
    pub(crate) fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let log = self.log.clone();
        let mut status = None;
        let child = &mut self.child;
        wait_until(
            "the watcher exits",
            within,
            &|| std::fs::read_to_string(&log).unwrap_or_default(),
            || {
                status = child.try_wait().unwrap();
                status.is_some()
            },
        );
        status.and_then(|s| s.code())
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TestEnv {
    /// Starts the watcher with `args` and `env`, and waits for its startup run to be logged.
    pub(crate) fn watch(&self, args: &[&str], env: &[(&str, &str)]) -> Watcher {
        self.watch_with(&self.home().join("watcher.log"), args, env)
    }

    /// [`TestEnv::watch`], its log (at debug level) going to `log`.
    fn watch_with(&self, log: &Path, args: &[&str], env: &[(&str, &str)]) -> Watcher {
        let mut cmd = self.command(args);
        cmd.env("RUST_LOG", "memsched=debug")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(log).unwrap());
        let watcher = Watcher {
            child: cmd.spawn().unwrap(),
            log: log.to_path_buf(),
        };
        wait_until(
            "the startup run is recorded",
            Duration::from_secs(20),
            &|| watcher.log(),
            || self.runs().iter().any(|r| r["trigger"] == "startup"),
        );
        watcher
    }

    /// The runs in scheduler_log.json so far.
    pub(crate) fn runs(&self) -> Vec<Value> {
        std::fs::read_to_string(self.state("scheduler_log.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .and_then(|v| v["runs"].as_array().cloned())
            .unwrap_or_default()
    }
}

/// Polls `cond` until it holds; past `within`, fails saying what did not happen, with the
/// watcher's log. Deadlines are generous: they cost time only when a test fails.
#[track_caller]
pub(crate) fn wait_until(
    what: &str,
    within: Duration,
    log: &dyn Fn() -> String,
    mut cond: impl FnMut() -> bool,
) {
    let deadline = std::time::Instant::now() + within;
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: did not happen within {within:?}\n--- log\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sets a file's mtime an hour back, so the settle time does not hold it.
pub(crate) fn set_old(path: &Path) {
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
}

pub(crate) fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

pub(crate) fn bytes(path: &Path) -> Vec<u8> {
    path.as_os_str().as_bytes().to_vec()
}

pub(crate) fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub(crate) fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts the exit status, printing both streams when it differs.
#[track_caller]
pub(crate) fn assert_exit(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "unexpected exit status\n--- stdout\n{}--- stderr\n{}",
        stdout(out),
        stderr(out)
    );
}

/// The `--json` run record of a run.
#[track_caller]
pub(crate) fn run_record(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", stdout(out)))
}

/// The report of `action` in a run record.
#[track_caller]
pub(crate) fn action<'a>(record: &'a Value, name: &str) -> &'a Value {
    record["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["action"] == name)
        .unwrap_or_else(|| panic!("no {name} in {record:#}"))
}

impl TestEnv {
    /// Starts the watcher as [`TestEnv::watch`] does, its log (at debug level) going to
    /// `log` instead: a file inside a watched folder, as a user's `2>>memsched.err` would.
    pub(crate) fn watch_logging_to(&self, log: &Path, args: &[&str]) -> Watcher {
        self.watch_with(log, args, &[])
    }
}
