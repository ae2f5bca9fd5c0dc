//! The progress of a long ingest on stderr, when it is a terminal: a bar over batches
//! with files done and failed, the rate and the time left (issue 11: 20,000 files in 313
//! batches ran 20 s with nothing on screen). The batch loop calls [`Batches::sent`] after
//! each batch; everything else (terminal or not, too small to show) is decided here.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::run::live;

/// Batches below this many are over before a bar would help.
const SHOWN_FROM: usize = 2;

/// The bar over one ingest's batches.
#[derive(Debug)]
pub(crate) struct Batches {
    bar: ProgressBar,
    done: usize,
    failed: usize,
}

impl Batches {
    /// A bar for `files` in `batches`, drawn only when `wanted` (not `--json`, not the
    /// watcher) and stderr is a terminal.
    #[must_use]
    pub(crate) fn new(files: usize, batches: usize, wanted: bool) -> Batches {
        let shown = wanted && batches >= SHOWN_FROM && std::io::stderr().is_terminal();
        let bar = ProgressBar::with_draw_target(Some(files as u64), ProgressDrawTarget::hidden());
        // Among the other bars (the running step's spinner below it), never over them.
        Batches::drawn_as(if shown { live::bars().add(bar) } else { bar })
    }

    fn drawn_as(bar: ProgressBar) -> Batches {
        bar.set_style(
            ProgressStyle::with_template(
                "ingest {bar:30} {pos}/{len} files {msg} ({per_sec}, {eta} left)",
            )
            .expect("the template is valid"),
        );
        bar.enable_steady_tick(Duration::from_millis(500));
        Batches {
            bar,
            done: 0,
            failed: 0,
        }
    }

    /// One batch finished: `done` files recorded, `failed` failed.
    pub(crate) fn sent(&mut self, done: usize, failed: usize) {
        self.done += done;
        self.failed += failed;
        self.bar.inc((done + failed) as u64);
        self.bar
            .set_message(format!("({} done, {} failed)", self.done, self.failed));
    }

    /// The text the bar shows now (for tests).
    #[cfg(test)]
    #[must_use]
    pub(crate) fn message(&self) -> String {
        self.bar.message()
    }
}

impl Drop for Batches {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
        live::bars().remove(&self.bar);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_counts_files_done_and_failed_across_batches() {
        let mut p = Batches::drawn_as(ProgressBar::hidden());
        p.sent(2, 0);
        p.sent(1, 2);
        assert_eq!(p.message(), "(3 done, 2 failed)");
        assert_eq!(p.bar.position(), 5);
    }
}
