//! `memsched autostart`: entries in a temp XDG_CONFIG_HOME, never the real user's, named
//! per pipeline home and checked by the real validators (desktop-file-validate,
//! systemd-analyze verify; `.ci/run` installs both).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::util::*;

/// The files memsched wrote under `dir` (autostart/ or systemd/user/).
fn written(env: &TestEnv, dir: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(env.home().join(".config").join(dir)) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs a validator on `file`; it must exit 0 and say nothing.
#[track_caller]
fn validate(program: &[&str], file: &Path) {
    let out = Command::new(program[0])
        .args(&program[1..])
        .arg(file)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{} is needed for this test ({e}); .ci/run installs it",
                program[0]
            )
        });
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        out.status.success() && said.trim().is_empty(),
        "{} {}: {}\n{said}\n--- file\n{}",
        program.join(" "),
        file.display(),
        out.status,
        std::fs::read_to_string(file).unwrap()
    );
}

#[test]
fn enable_writes_an_entry_named_for_this_pipeline_that_the_validators_accept() {
    let env = TestEnv::new();
    env.rules(&["--"], "");
    env.test()
        .args(&["autostart", "enable"])
        .stdout_has("the watcher starts with your next desktop session")
        .run();
    let entries = written(&env, "autostart");
    assert_eq!(entries.len(), 1, "{entries:?}");
    let name = entries[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(name.starts_with("memsched-memsched-test-"), "{name}");
    let text = std::fs::read_to_string(&entries[0]).unwrap();
    let exec = text.lines().find(|l| l.starts_with("Exec=")).unwrap();
    assert_eq!(
        exec,
        format!(
            "Exec=\"{BIN}\" \"--paths\" \"{}\" \"--rules\" \"{}\"",
            env.home().join("paths.json").display(),
            env.home().join("watch-rules.toml").display()
        )
    );
    validate(&["desktop-file-validate"], &entries[0]);
}

#[test]
fn issue_11_a_backslash_in_the_home_makes_a_valid_desktop_entry() {
    let env = TestEnv::new();
    let home = env.home().join("back\\slash $HOME");
    std::fs::create_dir_all(home.join("Data")).unwrap();
    std::fs::write(home.join("paths.json"), "{}").unwrap();
    std::fs::write(
        home.join("watch-rules.toml"),
        format!("[actions.ingest]\ncommand = {}\n", env.step_argv(&["--"])),
    )
    .unwrap();
    let paths = home.join("paths.json");
    env.test()
        .paths_from_env()
        .env("MEMSCHED_PATHS", paths.to_str().unwrap())
        .args(&["autostart", "enable"])
        .run();
    let entries = written(&env, "autostart");
    validate(&["desktop-file-validate"], &entries[0]);
    let text = std::fs::read_to_string(&entries[0]).unwrap();
    // Quoted (`\\`), then string-escaped (`\\\\`): the spec's four backslashes.
    assert!(
        text.contains("back\\\\\\\\slash \\\\$HOME/paths.json"),
        "{text}"
    );
}

#[test]
fn issue_11_the_systemd_unit_passes_systemd_analyze_verify_and_stops_restarting_on_bad_config() {
    let env = TestEnv::new();
    env.rules(&["--"], "");
    env.test()
        .args(&["autostart", "enable", "--systemd"])
        .stdout_has("systemctl --user daemon-reload && systemctl --user enable --now memsched-")
        .run();
    let units = written(&env, "systemd/user");
    assert_eq!(units.len(), 1, "{units:?}");
    let unit = std::fs::read_to_string(&units[0]).unwrap();
    for line in [
        "Type=notify",
        "RestartPreventExitStatus=2 3",
        "StartLimitBurst=5",
        "WatchdogSec=",
    ] {
        assert!(unit.contains(line), "{line} missing:\n{unit}");
    }
    validate(&["systemd-analyze", "verify"], &units[0]);
}

#[test]
fn issue_11_enable_refuses_a_second_kind_for_the_same_pipeline() {
    let env = TestEnv::new();
    env.rules(&["--"], "");
    env.test().args(&["autostart", "enable"]).run();
    env.test()
        .args(&["autostart", "enable", "--systemd"])
        .status(2)
        .stderr_has(
            "already starts this pipeline's watcher; run `memsched autostart disable` first",
        )
        .run();
    assert!(written(&env, "systemd/user").is_empty());
}

#[test]
fn issue_11_two_pipelines_get_two_entries_and_status_and_disable_work_anywhere() {
    let env = TestEnv::new();
    env.rules(&["--"], "");
    let other = env.home().join("other");
    std::fs::create_dir_all(other.join("Data")).unwrap();
    std::fs::write(other.join("paths.json"), "{}").unwrap();
    std::fs::copy(
        env.home().join("watch-rules.toml"),
        other.join("watch-rules.toml"),
    )
    .unwrap();
    env.test().args(&["autostart", "enable"]).run();
    let other_paths = other.join("paths.json");
    env.test()
        .paths_from_env()
        .env("MEMSCHED_PATHS", other_paths.to_str().unwrap())
        .args(&["autostart", "enable"])
        .run();
    assert_eq!(written(&env, "autostart").len(), 2);

    // Outside any pipeline home (no paths.json there or above, none named): status lists
    // both.
    let outside = tempfile::tempdir().unwrap();
    let mut cmd = env.bare_command();
    cmd.current_dir(outside.path())
        .args(["autostart", "status", "--json"]);
    let out = cmd.output().unwrap();
    assert_exit(&out, 0);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["entries"].as_array().unwrap().len(), 2, "{doc:#}");

    // Disable for one pipeline leaves the other's entry.
    env.test()
        .paths_from_env()
        .env("MEMSCHED_PATHS", other_paths.to_str().unwrap())
        .args(&["autostart", "disable"])
        .stdout_has("removed ")
        .run();
    assert_eq!(written(&env, "autostart").len(), 1);
    // Outside a home, the only pipeline left is the one to disable.
    let mut cmd = env.bare_command();
    cmd.current_dir(outside.path())
        .args(["autostart", "disable"]);
    let out = cmd.output().unwrap();
    assert_exit(&out, 0);
    assert!(written(&env, "autostart").is_empty());
}

#[test]
fn issue_11_disable_stops_the_unit_before_removing_it() {
    let env = TestEnv::new();
    env.rules(&["--"], "");
    env.test().args(&["autostart", "enable", "--systemd"]).run();
    let unit = written(&env, "systemd/user").remove(0);
    let name = unit.file_name().unwrap().to_string_lossy().into_owned();
    let wants = env.home().join(".config/systemd/user/default.target.wants");
    std::fs::create_dir_all(&wants).unwrap();
    std::os::unix::fs::symlink(&unit, wants.join(&name)).unwrap();
    // No user manager in the tests: systemctl fails, and memsched says how to stop it.
    env.test()
        .args(&["autostart", "disable"])
        .env("PATH", "/nonexistent")
        .stdout_has(&format!(
            "systemctl --user stop {name} && systemctl --user daemon-reload"
        ))
        .run();
    assert!(!unit.exists());
    assert!(
        wants.join(&name).symlink_metadata().is_err(),
        "the enablement link is left"
    );
}
