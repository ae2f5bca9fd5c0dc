//! Desktop notifications (issue 11) against a real session bus: a private dbus-daemon,
//! and dbus-monitor recording every call to org.freedesktop.Notifications. `.ci/run`
//! installs dbus and glib's gdbus.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::util::*;

/// A session bus of the test's own and a recorder of what is sent to the notification
/// service; both killed on drop.
struct Bus {
    daemon: Child,
    monitor: Child,
    address: String,
    log: PathBuf,
}

impl Bus {
    fn start(env: &TestEnv) -> Bus {
        let config = env.write(
            "bus.conf",
            &format!(
                "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\" \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n\
                 <busconfig><type>session</type><listen>unix:dir={}</listen><auth>EXTERNAL</auth>\n\
                 <policy context=\"default\"><allow send_destination=\"*\" eavesdrop=\"true\"/><allow eavesdrop=\"true\"/><allow own=\"*\"/></policy></busconfig>\n",
                env.home().display()
            ),
        );
        let mut daemon = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .args(["--print-address=1", "--nofork"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("dbus-daemon is needed for this test (.ci/run installs dbus)");
        let mut address = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(daemon.stdout.take().unwrap()),
            &mut address,
        )
        .unwrap();
        let address = address.trim().to_owned();
        let log = env.home().join("monitor.log");
        let monitor = Command::new("dbus-monitor")
            .args([
                "--address",
                &address,
                "interface='org.freedesktop.Notifications'",
            ])
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let bus = Bus {
            daemon,
            monitor,
            address,
            log,
        };
        // It prints NameLost when it has become a monitor.
        wait_until(
            "dbus-monitor starts",
            Duration::from_secs(10),
            &|| bus.recorded(),
            || bus.recorded().contains("NameLost"),
        );
        bus
    }

    fn recorded(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn notifications(&self) -> usize {
        self.recorded().matches("member=Notify").count()
    }

    /// Sends a sentinel through the monitor and waits for it: whatever memsched sent
    /// before it has been recorded by then.
    fn settle(&self, name: &str) {
        let status = Command::new("dbus-send")
            .args([
                &format!("--bus={}", self.address),
                "--type=signal",
                "/test",
                &format!("org.freedesktop.Notifications.{name}"),
            ])
            .status()
            .unwrap();
        assert!(status.success());
        wait_until(
            "the sentinel is recorded",
            Duration::from_secs(10),
            &|| self.recorded(),
            || self.recorded().contains(&format!("member={name}")),
        );
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        for child in [&mut self.monitor, &mut self.daemon] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn dead_task_home(extra: &str) -> TestEnv {
    let env = TestEnv::new();
    env.raw_rules(&format!("[actions.watchdog]\n{extra}"));
    env.state_file(
        "task_queue.json",
        &json!({"tasks": [{"id": "t1", "step": "embed", "status": "dead", "attempts": 5, "last_error": "exit 3: bad input"}]}),
    );
    env
}

#[test]
fn issue_11_a_dead_task_is_told_once_on_the_session_bus() {
    let env = dead_task_home("");
    let bus = Bus::start(&env);
    env.test()
        .args(&["--once", "--mode", "watchdog"])
        .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
        .run();
    wait_until(
        "the notification reaches the bus",
        Duration::from_secs(10),
        &|| bus.recorded(),
        || bus.notifications() == 1,
    );
    let said = bus.recorded();
    for needle in [
        "string \"memsched\"",
        "string \"memsched: the pipeline is failing\"",
        "1 dead task (out of attempts): t1",
        "See `memsched status`.",
        "string \"urgency\"",
    ] {
        assert!(said.contains(needle), "{needle} not in:\n{said}");
    }
    // The same health again: not told twice.
    env.test()
        .args(&["--once", "--mode", "watchdog"])
        .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
        .run();
    bus.settle("SecondRunDone");
    assert_eq!(bus.notifications(), 1, "{}", bus.recorded());
}

#[test]
fn issue_11_notify_false_keeps_the_desktop_quiet() {
    let env = dead_task_home("notify = false\n");
    let bus = Bus::start(&env);
    env.test()
        .args(&["--once", "--mode", "watchdog"])
        .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
        .run();
    bus.settle("RunDone");
    assert_eq!(bus.notifications(), 0, "{}", bus.recorded());
}
