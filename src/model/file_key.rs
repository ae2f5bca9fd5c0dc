//! The text key of a data file in the state files: its path relative to data_dir.
//!
//! JSON strings hold only Unicode, but file names are bytes. A name that is valid UTF-8 is
//! its own key. Any other name becomes a NUL character followed by the hex of its bytes: a
//! NUL can never appear in a file name, so the two forms cannot collide, and the original
//! bytes come back exactly.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

const MARK: char = '\0';

/// The key of `relpath` (a path relative to data_dir).
#[must_use]
pub(crate) fn key(relpath: &Path) -> String {
    match relpath.to_str() {
        Some(text) => text.to_owned(),
        None => {
            let mut key = String::from(MARK);
            for b in relpath.as_os_str().as_bytes() {
                let _ = write!(key, "{b:02x}");
            }
            key
        }
    }
}

/// The relative path a key stands for; `None` when the key is not one we made.
#[must_use]
pub(crate) fn path(key: &str) -> Option<PathBuf> {
    let Some(hex) = key.strip_prefix(MARK) else {
        return Some(PathBuf::from(key));
    };
    if hex.len() % 2 != 0 {
        return None;
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    Some(PathBuf::from(std::ffi::OsString::from_vec(bytes)))
}

/// A readable form of `relpath` for messages (invalid bytes shown as `\xNN`).
#[must_use]
pub(crate) fn display(relpath: &Path) -> String {
    display_bytes(relpath.as_os_str())
}

fn display_bytes(name: &OsStr) -> String {
    name.as_bytes()
        .utf8_chunks()
        .fold(String::new(), |mut out, chunk| {
            out.push_str(chunk.valid());
            for b in chunk.invalid() {
                let _ = write!(out, "\\x{b:02x}");
            }
            out
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_names_are_their_own_key() {
        assert_eq!(key(Path::new("notes/día 1.txt")), "notes/día 1.txt");
        assert_eq!(
            path("notes/día 1.txt").unwrap(),
            Path::new("notes/día 1.txt")
        );
    }

    #[test]
    fn other_names_round_trip_byte_for_byte() {
        let raw = PathBuf::from(std::ffi::OsString::from_vec(b"a\xff\nb.txt".to_vec()));
        let k = key(&raw);
        assert_eq!(k, "\u{0}61ff0a622e747874");
        assert_eq!(path(&k).unwrap(), raw);
        assert_eq!(display(&raw), "a\\xff\nb.txt");
        assert!(path("\u{0}6").is_none());
    }
}
