//! systemd's notify protocol (sd_notify(3)) for a `Type=notify` unit: READY, STATUS,
//! WATCHDOG keep-alives and STOPPING, sent as datagrams to `$NOTIFY_SOCKET`; every call is
//! a no-op when it is unset (not under systemd). A dozen lines over std's Unix datagram
//! socket, so no crate: the protocol is one `KEY=value` line per datagram.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::PathBuf;
use std::time::Duration;

/// Where notifications go: the socket systemd named, if any.
#[derive(Debug, Clone, Default)]
pub(crate) struct Notifier {
    socket: Option<PathBuf>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// The notifier systemd set up for this process: `$NOTIFY_SOCKET`, and the keep-alive
    /// interval from `$WATCHDOG_USEC` when `$WATCHDOG_PID` is unset or this process.
    #[must_use]
    pub(crate) fn from_env() -> Notifier {
        let watchdog_pid = std::env::var("WATCHDOG_PID").ok();
        let ours = watchdog_pid.is_none_or(|p| p == std::process::id().to_string());
        Notifier {
            socket: std::env::var_os("NOTIFY_SOCKET")
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
            watchdog: std::env::var("WATCHDOG_USEC")
                .ok()
                .filter(|_| ours)
                .and_then(|us| us.parse::<u64>().ok())
                .filter(|us| *us > 0)
                .map(Duration::from_micros),
        }
    }

    /// A notifier sending to `socket` (`@name` for an abstract socket), for tests.
    #[cfg(test)]
    #[must_use]
    pub(crate) fn to_socket(socket: PathBuf, watchdog: Option<Duration>) -> Notifier {
        Notifier {
            socket: Some(socket),
            watchdog,
        }
    }

    /// Whether systemd listens (a `Type=notify` unit).
    #[cfg(test)]
    #[must_use]
    pub(crate) fn enabled(&self) -> bool {
        self.socket.is_some()
    }

    /// How often to send [`Notifier::watchdog`]: half of `WatchdogSec=`, as sd_watchdog_enabled(3)
    /// advises; `None` when systemd watches no keep-alive.
    #[must_use]
    pub(crate) fn keep_alive_interval(&self) -> Option<Duration> {
        self.watchdog.map(|w| w / 2)
    }

    /// Startup is done: the watcher hears its folders.
    pub(crate) fn ready(&self) {
        self.send("READY=1");
    }

    /// A one-line status for `systemctl status` ("idle; last run 12:03 ok").
    pub(crate) fn status(&self, text: &str) {
        // One line: a newline would start another assignment.
        self.send(&format!("STATUS={}", text.replace('\n', " ")));
    }

    /// The keep-alive: the loop is still turning.
    pub(crate) fn watchdog(&self) {
        self.send("WATCHDOG=1");
    }

    /// Shutdown has begun (a step may still be finishing).
    pub(crate) fn stopping(&self) {
        self.send("STOPPING=1");
    }

    /// Sends one message; failures are logged, never fatal (systemd may be restarting).
    fn send(&self, message: &str) {
        let Some(socket) = &self.socket else { return };
        if let Err(e) = send_to(socket, message) {
            log::debug!("cannot notify systemd at {}: {e}", socket.display());
        }
    }
}

fn send_to(socket: &std::path::Path, message: &str) -> io::Result<()> {
    let addr = match socket.to_str().and_then(|s| s.strip_prefix('@')) {
        Some(name) => SocketAddr::from_abstract_name(name)?,
        None => SocketAddr::from_pathname(socket)?,
    };
    UnixDatagram::unbound()?.send_to_addr(message.as_bytes(), &addr)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_reach_a_real_notify_socket_one_datagram_each() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let n = Notifier::to_socket(path, Some(Duration::from_secs(120)));
        assert_eq!(n.keep_alive_interval(), Some(Duration::from_secs(60)));
        n.ready();
        n.status("idle; last run 12:03 ok\nsecond line");
        n.watchdog();
        n.stopping();
        let mut buf = [0; 256];
        let mut got = Vec::new();
        for _ in 0..4 {
            let len = server.recv(&mut buf).unwrap();
            got.push(String::from_utf8_lossy(&buf[..len]).into_owned());
        }
        assert_eq!(
            got,
            [
                "READY=1",
                "STATUS=idle; last run 12:03 ok second line",
                "WATCHDOG=1",
                "STOPPING=1"
            ]
        );
    }

    #[test]
    fn abstract_sockets_are_reached_too() {
        let name = format!("memsched-test-{}", std::process::id());
        let server =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(&name).unwrap()).unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Notifier::to_socket(PathBuf::from(format!("@{name}")), None).ready();
        let mut buf = [0; 64];
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1");
    }

    #[test]
    fn without_a_socket_nothing_is_sent_and_nothing_fails() {
        let n = Notifier::default();
        assert!(!n.enabled());
        assert_eq!(n.keep_alive_interval(), None);
        n.ready();
        n.watchdog();
    }
}
