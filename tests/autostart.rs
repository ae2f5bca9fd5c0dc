//! `memsched autostart`: entries in a temp XDG_CONFIG_HOME, never the real user's.

use crate::util::*;

#[test]
fn enable_writes_a_desktop_entry_running_this_watcher_and_disable_removes_it() {
    let env = TestEnv::new();
    env.rules(&["--"], "");
    let out = env.run(&["autostart", "enable"]);
    assert_exit(&out, 0);
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
    assert!(stdout(&env.run(&["autostart", "status"])).contains("Exec=\""));

    assert_exit(&env.run(&["autostart", "enable", "--systemd"]), 0);
    let unit =
        std::fs::read_to_string(env.home().join(".config/systemd/user/memsched.service")).unwrap();
    assert!(
        unit.contains(&format!("ExecStart=\"{BIN}\" \"--paths\"")),
        "{unit}"
    );

    let out = env.run(&["autostart", "disable"]);
    assert_exit(&out, 0);
    assert!(!entry.exists());
    assert!(
        stdout(&out).contains("systemctl --user disable --now memsched.service"),
        "{}",
        stdout(&out)
    );
}
