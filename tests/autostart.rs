//! `memsched autostart`: entries in a temp XDG_CONFIG_HOME, never the real user's.

use crate::util::*;

#[test]
fn enable_writes_a_desktop_entry_running_this_watcher_and_disable_removes_it() {
    let env = TestEnv::new();
    env.rules(&["--"], "");
    env.test().args(&["autostart", "enable"]).run();
    let entry = env.home().join(".config/autostart/memsched.desktop");
    let text = std::fs::read_to_string(&entry).unwrap();
    let exec = text.lines().find(|l| l.starts_with("Exec=")).unwrap();
    assert_eq!(
        exec,
        format!(
            "Exec=\"{BIN}\" \"--paths\" \"{}\" \"--rules\" \"{}\"",
            env.home().join("paths.json").display(),
            env.home().join("watch-rules.toml").display()
        )
    );
    env.test()
        .args(&["autostart", "status"])
        .stdout_has("Exec=\"")
        .run();

    env.test().args(&["autostart", "enable", "--systemd"]).run();
    let unit =
        std::fs::read_to_string(env.home().join(".config/systemd/user/memsched.service")).unwrap();
    assert!(
        unit.contains(&format!("ExecStart=\"{BIN}\" \"--paths\"")),
        "{unit}"
    );

    env.test()
        .args(&["autostart", "disable"])
        .stdout_has("systemctl --user disable --now memsched.service")
        .run();
    assert!(!entry.exists());
}
