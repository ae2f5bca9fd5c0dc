//! What the operator sees is true and gives them levers (issue 20): log severities that fit
//! journald, locks as the kernel holds them, no silent no-ops, and `memsched tasks`.

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::util::*;

/// The log lines at syslog priority `p` (`<3>` error … `<7>` debug).
fn at(log: &str, p: u8) -> Vec<&str> {
    let prefix = format!("<{p}>");
    log.lines().filter(|l| l.starts_with(&prefix)).collect()
}

/// Issue 20 item 1: `journalctl -p warning` must show a failed step with its failed files,
/// not the stop that was asked for; a tick that found nothing says nothing at info.
#[test]
fn issue_20_a_failure_is_an_error_with_its_files_a_stop_is_info_a_quiet_tick_is_silent() {
    let env = TestEnv::new();
    let step = env.step_argv(&["--fail", "bad", "--"]);
    env.raw_rules(&format!(
        "tick = \"1s\"\n[actions.ingest]\ncommand = {step}\nsettle = \"0s\"\n"
    ));
    env.data_file("bad.txt", "b");
    env.data_file("good.txt", "g");
    let log = env.home().join("journal.log");
    let file = std::fs::File::create(&log).unwrap();
    let meta = file.metadata().unwrap();
    // stderr is "the journal": its device and inode are what JOURNAL_STREAM names.
    let mut child = env
        .command(&[])
        .env("RUST_LOG", "memsched=debug")
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .stdout(std::process::Stdio::null())
        .stderr(file)
        .spawn()
        .unwrap();
    let text = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_until(
        "two ticks are recorded",
        Duration::from_secs(30),
        &text,
        || env.runs().iter().filter(|r| r["trigger"] == "tick").count() >= 2,
    );
    kill(
        Pid::from_raw(i32::try_from(child.id()).unwrap()),
        Signal::SIGTERM,
    )
    .unwrap();
    wait_until("the watcher exits", Duration::from_secs(20), &text, || {
        child.try_wait().unwrap().is_some()
    });
    let text = text();
    let errors = at(&text, 3).join("\n");
    assert!(errors.contains("ingest: failed"), "{text}");
    assert!(errors.contains("bad.txt: refused bad.txt"), "{text}");
    let warnings = at(&text, 4).join("\n");
    assert!(!warnings.contains("stopping"), "{text}");
    assert!(
        at(&text, 6).join("\n").contains("SIGTERM: stopping"),
        "{text}"
    );
    let info = at(&text, 6);
    assert!(
        !info
            .iter()
            .any(|l| l.contains("run (tick)") || l.contains("nothing to do")),
        "a quiet tick logged at info:\n{text}"
    );
}
