//! How a watch thread idles: asleep in poll(2) on the descriptor it serves and a stop pipe,
//! with no timeout, so it never wakes while nothing happens (the inotify reader and the
//! mount-table watch both).

use std::io::PipeReader;
use std::os::fd::{AsFd, BorrowedFd};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

/// Why the sleep ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Woken {
    /// `fd` has one of the events asked for (or an error the kernel reports with them).
    Ready,
    /// The stop pipe was closed: the thread ends.
    Stopped,
}

/// Sleeps until `fd` has one of `events` or `stop` is closed (a stop wins over both at
/// once). A signal's EINTR sleeps again.
pub(crate) fn until_ready(
    fd: BorrowedFd<'_>,
    events: PollFlags,
    stop: &PipeReader,
) -> nix::Result<Woken> {
    loop {
        let mut fds = [
            PollFd::new(fd, events),
            PollFd::new(stop.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
        let woke = |i: usize| fds[i].revents().is_some_and(|r| !r.is_empty());
        if woke(1) {
            return Ok(Woken::Stopped);
        }
        if woke(0) {
            return Ok(Woken::Ready);
        }
    }
}
