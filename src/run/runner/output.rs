//! What a step's output leaves: its bounded [`Tail`] for the run log, read from both pipes
//! as they come (and passed on live with -v) by [`drain`].

use std::collections::VecDeque;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::run::live;

/// Lines of stdout and of stderr kept for the log.
const TAIL_LINES: usize = 20;
/// Characters kept of one output line.
const LINE_CHARS: usize = 400;
/// Bytes kept of one output line while reading: room for [`LINE_CHARS`] characters of
/// any UTF-8.
const LINE_BYTES: usize = LINE_CHARS * 4;
/// Bytes read from a step's output at a time.
const READ_CHUNK: usize = 64 * 1024;

/// The last lines of a stream, bounded whatever the stream holds (issue 10 item 5): at
/// most [`TAIL_LINES`] lines of at most [`LINE_BYTES`] bytes each, plus the line being
/// read, cut at the same length. A step printing gigabytes without a newline costs a
/// fixed amount of memory.
#[derive(Debug, Default)]
pub(in crate::run) struct Tail {
    lines: VecDeque<Vec<u8>>,
    current: Vec<u8>,
    /// Whether any bytes were read since the last newline (an empty line still counts).
    open: bool,
}

impl Tail {
    pub(in crate::run) fn push(&mut self, mut chunk: &[u8]) {
        while let Some(at) = chunk.iter().position(|b| *b == b'\n') {
            self.extend(&chunk[..at]);
            self.end_line();
            chunk = &chunk[at + 1..];
        }
        if !chunk.is_empty() {
            self.extend(chunk);
        }
    }

    fn extend(&mut self, bytes: &[u8]) {
        self.open = true;
        let room = LINE_BYTES.saturating_sub(self.current.len());
        self.current
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn end_line(&mut self) {
        if self.lines.len() == TAIL_LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(std::mem::take(&mut self.current));
        self.open = false;
    }

    /// Bytes held, for the bound's test.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.current.len() + self.lines.iter().map(Vec::len).sum::<usize>()
    }

    /// The lines kept (lossy UTF-8, each cut at [`LINE_CHARS`] characters).
    pub(in crate::run) fn finish(mut self) -> Vec<String> {
        if self.open {
            self.end_line();
        }
        self.lines
            .iter()
            .map(|line| {
                String::from_utf8_lossy(line)
                    .trim_end_matches('\r')
                    .chars()
                    .take(LINE_CHARS)
                    .collect()
            })
            .collect()
    }
}

/// Reads a stream to its end in fixed-size chunks, keeping its bounded [`Tail`].
/// The tails of the step's stdout and stderr: read as they come until both close, or
/// until `leader_gone` (the read end of a pipe the runner closes once the step's leader
/// has exited) says so, when what is left in them is taken without waiting. Either way the
/// pipes are closed on return, whatever still holds their other ends. With an `echo`,
/// what is read is also passed on as it comes (-v).
pub(super) fn drain(
    pipes: [Option<OwnedFd>; 2],
    leader_gone: &std::io::PipeReader,
    mut echo: Option<live::Echo>,
) -> [Vec<String>; 2] {
    let mut files: [Option<std::fs::File>; 2] = pipes.map(|p| {
        p.and_then(|fd| {
            fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).ok()?;
            Some(std::fs::File::from(fd))
        })
    });
    let mut tails = [Tail::default(), Tail::default()];
    let mut buf = vec![0; READ_CHUNK];
    // Reads what `file` holds now; `false` once it is closed (or broken).
    let mut take = |file: &mut std::fs::File, tail: &mut Tail, stream: usize| loop {
        match file.read(&mut buf) {
            Ok(0) => return false,
            Ok(n) => {
                tail.push(&buf[..n]);
                if let Some(echo) = echo.as_mut() {
                    echo.push(stream, &buf[..n]);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        }
    };
    loop {
        let mut fds = vec![PollFd::new(leader_gone.as_fd(), PollFlags::POLLIN)];
        let open: Vec<usize> = (0..2).filter(|i| files[*i].is_some()).collect();
        if open.is_empty() {
            break;
        }
        for i in &open {
            let file = files[*i].as_ref().expect("open files are some");
            fds.push(PollFd::new(file.as_fd(), PollFlags::POLLIN));
        }
        if poll(&mut fds, PollTimeout::NONE).is_err() {
            continue;
        }
        let gone = fds[0].any().unwrap_or(false);
        let ready: Vec<bool> = fds[1..].iter().map(|f| f.any().unwrap_or(true)).collect();
        for (i, ready) in open.iter().zip(ready) {
            if (ready || gone)
                && let Some(file) = files[*i].as_mut()
                && !take(file, &mut tails[*i], *i)
            {
                files[*i] = None;
            }
        }
        if gone {
            break;
        }
    }
    let [out, err] = tails;
    [out.finish(), err.finish()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_stays_bounded_whatever_the_stream_holds() {
        let mut tail = Tail::default();
        let chunk = vec![b'x'; READ_CHUNK];
        for _ in 0..1000 {
            tail.push(&chunk);
            assert!(tail.held() <= LINE_BYTES);
        }
        let line = format!("{}\n", "y".repeat(5000));
        for _ in 0..1000 {
            tail.push(line.as_bytes());
            assert!(tail.held() <= (TAIL_LINES + 1) * LINE_BYTES);
        }
        tail.push(b"last\r\n\npartial");
        let lines = tail.finish();
        assert_eq!(lines.len(), TAIL_LINES);
        assert!(lines.iter().all(|l| l.chars().count() <= LINE_CHARS));
        assert_eq!(lines[TAIL_LINES - 3..], ["last", "", "partial"]);
    }
}
