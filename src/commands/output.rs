//! How a command's result reaches stdout: pretty JSON for scripts (`--json`) or the text
//! for people. The one place that chooses, so every subcommand behaves alike.

use std::io::{self, Write};

use serde::Serialize;

/// Writes `value` as pretty JSON (with a final newline) when `json`, else whatever `text`
/// writes. A closed stdout (`| head`) is not an error of the command: the result is
/// returned for callers that care, and most ignore it.
pub(crate) fn print<T: Serialize>(
    json: bool,
    value: &T,
    text: impl FnOnce(&mut dyn Write, &T) -> io::Result<()>,
) -> io::Result<()> {
    let mut out = io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, value).map_err(io::Error::from)?;
        writeln!(out)
    } else {
        text(&mut out, value)
    }
}
