//! [`MountWatch`]: hears a file system mounted or unmounted at, under or above data_dir
//! (issue 21 item 9). inotify cannot: a mount over a watched folder hides it without an
//! event, and the new file system's folders carry no watch, so files written there waited
//! for the tick. The kernel marks `/proc/self/mountinfo` with POLLPRI whenever the mount
//! table changes; one thread sleeps in poll(2) on it and a stop pipe (idle, it never
//! wakes), compares the mounts that concern data_dir, and tells the loop, which watches
//! data_dir again and reconciles everything.

use std::io::{self, PipeReader, PipeWriter};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use crossbeam_channel::Sender;
use nix::poll::PollFlags;

use super::Notice;
use super::sleep::{self, Woken};

/// The mount table of memsched's own mount namespace.
const MOUNTINFO: &str = "/proc/self/mountinfo";

/// A running mount watch; dropping it stops its thread.
#[derive(Debug)]
pub(crate) struct MountWatch {
    /// Closing it wakes the thread to end.
    _stop: PipeWriter,
}

impl MountWatch {
    /// Starts hearing mounts that concern `data_dir` (canonical), telling `notices`. The
    /// mounts of now are the baseline: call it before the folders are watched, so a mount
    /// made meanwhile is heard.
    pub(crate) fn start(data_dir: &Path, notices: Sender<Notice>) -> io::Result<MountWatch> {
        let table = std::fs::File::open(MOUNTINFO)?;
        let (stop_rx, stop) = io::pipe()?;
        let data_dir = data_dir.to_path_buf();
        let mut known = concerning(&data_dir, &std::fs::read_to_string(MOUNTINFO)?);
        std::thread::Builder::new()
            .name("memsched-mounts".to_owned())
            .spawn(move || {
                while wait(&table, &stop_rx) {
                    let Ok(text) = std::fs::read_to_string(MOUNTINFO) else {
                        continue;
                    };
                    let now = concerning(&data_dir, &text);
                    if now != known {
                        let what = describe(&known, &now);
                        known = now;
                        if notices.send(Notice::Mounts(what)).is_err() {
                            return;
                        }
                    }
                }
            })?;
        Ok(MountWatch { _stop: stop })
    }
}

/// Sleeps until the mount table changes (true) or the stop pipe closes (false).
fn wait(table: &std::fs::File, stop: &PipeReader) -> bool {
    // The kernel reports a change as POLLERR | POLLPRI.
    match sleep::until_ready(table.as_fd(), PollFlags::POLLPRI, stop) {
        Ok(woken) => woken == Woken::Ready,
        Err(e) => {
            log::warn!("cannot watch the mount table: {e}; mounts wait for the tick");
            false
        }
    }
}

/// The mounts (id, mount point) at, under or above `data_dir`, in table order.
fn concerning(data_dir: &Path, mountinfo: &str) -> Vec<(u64, PathBuf)> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let id = fields.next()?.parse().ok()?;
            let point = unescape(fields.nth(3)?);
            (point.starts_with(data_dir) || data_dir.starts_with(&point)).then_some((id, point))
        })
        .collect()
}

/// A mount point as the kernel writes it: space, tab, line feed and backslash as `\ooo`.
fn unescape(field: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            let text = std::str::from_utf8(d).ok()?;
            u8::from_str_radix(text, 8).ok()
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// "mounted /d/sub; unmounted /d/old", for the log.
fn describe(before: &[(u64, PathBuf)], after: &[(u64, PathBuf)]) -> String {
    let mut parts = Vec::new();
    for (id, point) in after {
        if !before.iter().any(|(b, _)| b == id) {
            parts.push(format!("mounted {}", point.display()));
        }
    }
    for (id, point) in before {
        if !after.iter().any(|(a, _)| a == id) {
            parts.push(format!("unmounted {}", point.display()));
        }
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
40 22 0:35 / /home/me/memory/Data/sub rw - tmpfs tmpfs rw
41 22 0:36 / /home/me/memory/Data/with\\040space rw - tmpfs tmpfs rw
42 22 0:37 / /home/me/memory/Database rw - tmpfs tmpfs rw
43 22 0:38 / /mnt/usb rw - vfat /dev/sdb1 rw
";

    #[test]
    fn the_mounts_at_under_or_above_data_dir_are_those_that_concern_it() {
        let found = concerning(Path::new("/home/me/memory/Data"), TABLE);
        assert_eq!(
            found,
            [
                (22, PathBuf::from("/")),
                (40, PathBuf::from("/home/me/memory/Data/sub")),
                (41, PathBuf::from("/home/me/memory/Data/with space")),
            ]
        );
    }

    #[test]
    fn a_change_is_described_by_what_came_and_went() {
        let before = [(22, PathBuf::from("/")), (40, PathBuf::from("/d/sub"))];
        let after = [(22, PathBuf::from("/")), (44, PathBuf::from("/d/new"))];
        assert_eq!(
            describe(&before, &after),
            "mounted /d/new; unmounted /d/sub"
        );
    }

    #[test]
    fn a_backslash_not_followed_by_three_octal_digits_stays() {
        assert_eq!(unescape("a\\134b\\x"), PathBuf::from("a\\b\\x"));
    }
}
