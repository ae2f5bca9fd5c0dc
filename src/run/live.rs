//! What a running step shows while it runs, on memsched's stderr (issue 20 item 12): with
//! -v its output, line by line as it comes, each line prefixed with the action
//! (`ingest| …`); on a terminal, in a one-shot run, a one-line spinner per running step
//! (action, program, item, time) that is cleared when the step ends. Every bar memsched
//! draws lives in one [`MultiProgress`], so spinners, the batch bar and passed-through
//! lines never overwrite one another.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Whether spinners are wanted (a one-shot run, not `--json`, not `-q`).
static SPINNERS: AtomicBool = AtomicBool::new(false);
/// Whether steps' output is passed through (`-v`).
static ECHO: AtomicBool = AtomicBool::new(false);

/// A line a step writes without a newline is passed on in pieces of this many bytes, so a
/// step printing gigabytes on one line costs a fixed amount of memory.
const PIECE_BYTES: usize = 4096;

/// Sets what steps show while they run, for the whole process: `spinners` (still only on a
/// terminal) and `echo` (their output passed through).
pub(crate) fn configure(spinners: bool, echo: bool) {
    SPINNERS.store(spinners, Ordering::Relaxed);
    ECHO.store(echo, Ordering::Relaxed);
}

/// Every bar memsched draws on stderr (nothing is drawn when stderr is no terminal).
pub(crate) fn bars() -> &'static MultiProgress {
    static BARS: OnceLock<MultiProgress> = OnceLock::new();
    BARS.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
}

/// What a step's spinner says: "ingest: python3 on 3 files" (the program by its file name).
#[must_use]
pub(crate) fn spinner_text(action: Option<&str>, program: &str, item: Option<&str>) -> String {
    let program = Path::new(program)
        .file_name()
        .map_or_else(|| program.to_owned(), |n| n.to_string_lossy().into_owned());
    let mut text = match action {
        Some(action) => format!("{action}: {program}"),
        None => program,
    };
    if let Some(item) = item {
        text += &format!(" on {item}");
    }
    text
}

/// One running step's spinner; dropping it clears its line.
pub(crate) struct Spinner(Option<ProgressBar>);

impl Spinner {
    /// A spinner for a step that has just started, when spinners are wanted and stderr is a
    /// terminal; else nothing.
    #[must_use]
    pub(crate) fn start(action: Option<&str>, program: &str, item: Option<&str>) -> Spinner {
        if !SPINNERS.load(Ordering::Relaxed) || !std::io::stderr().is_terminal() {
            return Spinner(None);
        }
        let bar = bars().add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg}, {elapsed}")
                .expect("the template is valid"),
        );
        bar.set_message(spinner_text(action, program, item));
        bar.enable_steady_tick(Duration::from_millis(200));
        Spinner(Some(bar))
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        if let Some(bar) = self.0.take() {
            bar.finish_and_clear();
            bars().remove(&bar);
        }
    }
}

/// A step's stdout and stderr passed through to memsched's stderr, a whole line at a time,
/// each prefixed with the action; what is left without a newline goes out when it ends.
pub(crate) struct Echo {
    prefix: Vec<u8>,
    partial: [Vec<u8>; 2],
    /// Where the lines go: memsched's stderr; a buffer in the unit tests.
    sink: Option<Vec<u8>>,
}

impl Echo {
    /// An echo for a step of `action` (else named by `program`), when -v asks for one.
    #[must_use]
    pub(crate) fn new(action: Option<&str>, program: &str) -> Option<Echo> {
        ECHO.load(Ordering::Relaxed).then(|| Echo {
            prefix: format!("{}| ", action.unwrap_or(program)).into_bytes(),
            partial: [Vec::new(), Vec::new()],
            sink: None,
        })
    }

    /// Bytes the step wrote on `stream` (0 stdout, 1 stderr): every line they end is
    /// written out now.
    pub(crate) fn push(&mut self, stream: usize, mut bytes: &[u8]) {
        while let Some(at) = bytes.iter().position(|b| *b == b'\n') {
            self.partial[stream].extend_from_slice(&bytes[..at]);
            self.write_line(stream);
            bytes = &bytes[at + 1..];
        }
        self.partial[stream].extend_from_slice(bytes);
        while self.partial[stream].len() >= PIECE_BYTES {
            let rest = self.partial[stream].split_off(PIECE_BYTES);
            self.write_line(stream);
            self.partial[stream] = rest;
        }
    }

    fn write_line(&mut self, stream: usize) {
        let mut line = std::mem::take(&mut self.partial[stream]);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        let mut text = Vec::with_capacity(self.prefix.len() + line.len() + 1);
        text.extend_from_slice(&self.prefix);
        text.extend_from_slice(&line);
        text.push(b'\n');
        match &mut self.sink {
            Some(buffer) => buffer.extend_from_slice(&text),
            // Above any spinner, in one write, so lines of parallel steps never interleave;
            // stderr gone (a closed terminal) costs nothing: the record keeps the tail.
            None => bars().suspend(|| {
                let _ = std::io::stderr().lock().write_all(&text);
            }),
        }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        for stream in 0..2 {
            if !self.partial[stream].is_empty() {
                self.write_line(stream);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spinner_names_the_action_the_program_and_the_item() {
        assert_eq!(
            spinner_text(Some("ingest"), "/usr/bin/python3", Some("3 files")),
            "ingest: python3 on 3 files"
        );
        assert_eq!(
            spinner_text(Some("retry"), "sh", Some("ingest:notes/a.txt")),
            "retry: sh on ingest:notes/a.txt"
        );
        assert_eq!(spinner_text(None, "gdbus", None), "gdbus");
    }

    #[test]
    fn lines_are_prefixed_and_an_endless_one_goes_out_in_bounded_pieces() {
        let mut echo = Echo {
            prefix: b"ingest| ".to_vec(),
            partial: [Vec::new(), Vec::new()],
            sink: Some(Vec::new()),
        };
        echo.push(1, b"half");
        echo.push(0, b"out\n");
        echo.push(1, b" line\r\nnext");
        assert_eq!(
            echo.sink.as_deref(),
            Some(&b"ingest| out\ningest| half line\n"[..])
        );
        assert_eq!(echo.partial[1], b"next");
        for _ in 0..100 {
            echo.push(0, &[b'x'; 1000]);
            assert!(echo.partial[0].len() < PIECE_BYTES);
        }
        let written = echo.sink.as_ref().map_or(0, Vec::len);
        assert!(written > 90_000, "{written}");
    }
}
