//! Opening the files memsched reads and writes itself (state files, their journal, locks,
//! paths.json and the rules) so that nothing placed there can stop it: a link in the last
//! component is refused (`O_NOFOLLOW`, issue 10), and so is anything that is not a regular
//! file. A FIFO would block `open(2)` for good (issue 18 item 11), so the open itself does
//! not wait (`O_NONBLOCK`) and the file's type is checked before it is used.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use nix::fcntl::{FcntlArg, OFlag, fcntl};

/// Options that refuse a link and never block in `open(2)`: add read, write, create….
#[must_use]
pub(crate) fn options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.custom_flags((OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK).bits());
    options
}

/// Opens `path` with `options` (from [`options`]) and checks it is a regular file: a
/// FIFO, socket or device there is an error naming what it is. The descriptor is made
/// blocking again, so reads and writes behave as on any regular file.
pub(crate) fn open(path: &Path, options: &OpenOptions) -> std::io::Result<File> {
    let file = options.open(path)?;
    let kind = file.metadata()?.file_type();
    if !kind.is_file() {
        let what = if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_socket() {
            "a socket"
        } else if kind.is_char_device() || kind.is_block_device() {
            "a device"
        } else {
            "a folder"
        };
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("not a regular file but {what}: move it away"),
        ));
    }
    let flags = OFlag::from_bits_truncate(fcntl(file.as_raw_fd(), FcntlArg::F_GETFL)?);
    fcntl(
        file.as_raw_fd(),
        FcntlArg::F_SETFL(flags - OFlag::O_NONBLOCK),
    )?;
    Ok(file)
}

/// Reads the whole of `path` as [`open`] opens it.
pub(crate) fn read(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut file = open(path, options().read(true))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fifo_is_refused_without_waiting_for_a_writer() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("task_queue.json");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let e = read(&fifo).unwrap_err();
        assert_eq!(e.to_string(), "not a regular file but a FIFO: move it away");
        // Opened to write, a FIFO with no reader fails at once (ENXIO), still not waiting.
        assert!(open(&fifo, options().append(true).create(true)).is_err());
        let e = read(dir.path()).unwrap_err();
        assert!(e.to_string().contains("a folder"), "{e}");
    }

    #[test]
    fn a_regular_file_reads_whole_and_a_link_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.json");
        std::fs::write(&file, "[]").unwrap();
        assert_eq!(read(&file).unwrap(), b"[]");
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(crate::os::lock::is_link_refusal(&read(&link).unwrap_err()));
    }
}
