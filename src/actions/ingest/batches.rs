//! Splitting the files of an ingest run into batches that the kernel will accept as
//! arguments (issue 8): at most `batch_size` files, and, when the names go in argv, at
//! most the bytes `execve` allows, counted as xargs counts them.
//!
//! Linux refuses an `execve` with E2BIG ("Argument list too long") when the strings of
//! argv and envp, each with its NUL, plus one pointer per string, do not fit in
//! `sysconf(_SC_ARG_MAX)` (a quarter of the stack limit, 2 MiB by default), or when any
//! one argument is longer than `MAX_ARG_STRLEN` (32 pages, 128 KiB, with its NUL). A list
//! on stdin or in a list file has no such limit, nor has a resident step's JSON line, so
//! only `{files}` splits by bytes.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::ops::Range;
use std::os::unix::ffi::OsStrExt;

use super::plan::Candidate;
use crate::config::rules::{IngestConfig, PassFiles};
use crate::model::action::Action;
use crate::run::context::Context;
use crate::run::runner::{self, Vars};

/// The longest single argument Linux passes, its NUL included (`MAX_ARG_STRLEN`, 32 pages
/// of 4 KiB, fixed whatever the page size).
pub(crate) const MAX_ARG_STRLEN: usize = 32 * 4096;

/// Room kept free below `ARG_MAX` beside everything counted: the kernel's own pointer at
/// the top of the stack, and slack for an environment that grows between the count and
/// the start (xargs keeps 2 KiB for the same reasons).
pub(crate) const HEADROOM: usize = 1024;

/// `PATH_MAX`: the longest program path the kernel copies, when it cannot be resolved here.
const PATH_MAX: usize = 4096;

/// What one argument or environment string costs the kernel: its bytes, its NUL and
/// the pointer to it.
#[must_use]
pub(crate) fn cost(bytes: usize) -> usize {
    bytes + 1 + size_of::<usize>()
}

/// The bytes the files of one batch may take, and how many files it may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// At most this many files (the rules' `batch_size`).
    pub max_files: usize,
    /// The [`cost`] of all file names together may not pass this; `None`: names are not
    /// arguments (stdin, list file), so bytes do not matter.
    pub room: Option<usize>,
}

impl Limits {
    /// The limits for names passed as arguments: `arg_max` (from `sysconf`) less the
    /// program's path as `execve` gets it (`program` bytes: the kernel copies it too),
    /// the command's other arguments, its environment (every `NAME=value` string) and
    /// [`HEADROOM`].
    #[must_use]
    pub(crate) fn for_args<'a>(
        max_files: usize,
        arg_max: usize,
        program: usize,
        other_args: impl IntoIterator<Item = &'a OsStr>,
        env: impl IntoIterator<Item = usize>,
    ) -> Limits {
        let fixed: usize = other_args
            .into_iter()
            .map(|a| cost(a.as_bytes().len()))
            .chain(env.into_iter().map(cost))
            .sum::<usize>()
            + program
            + 1;
        Limits {
            max_files,
            room: Some(arg_max.saturating_sub(fixed + HEADROOM)),
        }
    }

    /// Why a name of `bytes` bytes can go in no batch, if it cannot.
    #[must_use]
    pub(crate) fn too_long(&self, bytes: usize) -> Option<String> {
        let room = self.room?;
        if bytes + 1 > MAX_ARG_STRLEN {
            Some(format!(
                "its path is {bytes} bytes, longer than the {} bytes Linux allows one argument; pass files on stdin (pass_files = \"stdin-nul\") to ingest it",
                MAX_ARG_STRLEN - 1
            ))
        } else if cost(bytes) > room {
            Some(format!(
                "its path ({bytes} bytes) does not fit in the argument space left beside the command and its environment ({room} bytes); pass files on stdin (pass_files = \"stdin-nul\") to ingest it"
            ))
        } else {
            None
        }
    }
}

/// One piece of the split, in the order of the files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    /// Files `range` go to the step together.
    Batch(Range<usize>),
    /// File `index` fits in no batch, for this reason: it fails alone.
    TooLong { index: usize, why: String },
    /// File `index`'s name holds a line break and the step reads one name per line: it
    /// would split into two names there (issue 18 item 4), so it fails alone, for this
    /// reason.
    LineBreak { index: usize, why: String },
}

/// Splits files whose names are `lens` bytes long into batches within `limits`, in
/// order, as xargs does: a batch closes when the next name would pass either limit.
#[must_use]
pub(crate) fn split(lens: &[usize], limits: &Limits) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut used = 0;
    let max_files = limits.max_files.max(1);
    for (i, &len) in lens.iter().enumerate() {
        if let Some(why) = limits.too_long(len) {
            if start < i {
                pieces.push(Piece::Batch(start..i));
            }
            pieces.push(Piece::TooLong { index: i, why });
            start = i + 1;
            used = 0;
            continue;
        }
        let over_bytes = limits.room.is_some_and(|room| used + cost(len) > room);
        if i - start == max_files || over_bytes {
            pieces.push(Piece::Batch(start..i));
            start = i;
            used = 0;
        }
        used += cost(len);
    }
    if start < lens.len() {
        pieces.push(Piece::Batch(start..lens.len()));
    }
    pieces
}

/// How many runs of the step `pieces` make.
#[must_use]
pub(crate) fn batch_count(pieces: &[Piece]) -> usize {
    pieces
        .iter()
        .filter(|p| matches!(p, Piece::Batch(_)))
        .count()
}

/// The pieces the files of `send` make for this step: by bytes when their names go in
/// argv, by count alone otherwise. When names go one per line, a name with a line break
/// is a piece of its own that is never sent.
#[must_use]
pub(crate) fn plan(ctx: &Context<'_>, config: &IngestConfig, send: &[Candidate]) -> Vec<Piece> {
    // A resident step's names go in JSON, which spells a line break.
    let lines = line_mode(config.pass_files).filter(|_| config.resident.is_none());
    let (broken, sendable): (Vec<usize>, Vec<usize>) =
        (0..send.len()).partition(|&i| lines.is_some() && has_line_break(send[i].abs.as_os_str()));
    let lens: Vec<usize> = sendable
        .iter()
        .map(|&i| send[i].abs.as_os_str().len())
        .collect();
    let mut pieces = renumber(split(&lens, &limits(ctx, config)), &sendable);
    if let Some(mode) = lines {
        pieces.extend(broken.into_iter().map(|index| Piece::LineBreak {
            index,
            why: format!(
                "its name holds a line break, and pass_files = \"{mode}\" gives the step one name per line: it would read this one as two names (each maybe another file); set pass_files = \"stdin-nul\" (names end with a NUL, which no name holds) to ingest it"
            ),
        }));
    }
    pieces
}

/// The name of a pass_files mode that lists one name per line.
fn line_mode(pass: PassFiles) -> Option<&'static str> {
    match pass {
        PassFiles::StdinLines => Some("stdin-lines"),
        PassFiles::ListFile => Some("list-file"),
        PassFiles::Args | PassFiles::StdinNul => None,
    }
}

/// Whether a line reader would split `name`: a `\n`, or a `\r` (Python's text mode and
/// others take it for a line end too).
fn has_line_break(name: &OsStr) -> bool {
    name.as_bytes().iter().any(|b| matches!(b, b'\n' | b'\r'))
}

/// `pieces` of the files `kept` (split as if they were all), with indices into all files.
/// Batches of consecutive kept files stay whole ranges; a gap (a file left out) splits them.
fn renumber(pieces: Vec<Piece>, kept: &[usize]) -> Vec<Piece> {
    let mut out = Vec::new();
    for piece in pieces {
        match piece {
            Piece::Batch(range) => {
                let mut start = kept[range.start];
                let mut end = start + 1;
                for &i in &kept[range.start + 1..range.end] {
                    if i != end {
                        out.push(Piece::Batch(start..end));
                        start = i;
                    }
                    end = i + 1;
                }
                out.push(Piece::Batch(start..end));
            }
            Piece::TooLong { index, why } => out.push(Piece::TooLong {
                index: kept[index],
                why,
            }),
            Piece::LineBreak { index, why } => out.push(Piece::LineBreak {
                index: kept[index],
                why,
            }),
        }
    }
    out
}

/// The limits of one batch of this step, with the environment it will really get:
/// memsched's own, with the step's variables set over it.
fn limits(ctx: &Context<'_>, config: &IngestConfig) -> Limits {
    if config.pass_files != PassFiles::Args || config.resident.is_some() {
        return Limits {
            max_files: config.batch_size,
            room: None,
        };
    }
    // `{files}` with no files leaves the command's other arguments.
    let other = runner::expand(&config.command.argv, &Vars::default());
    // The report's real path is a fresh temporary folder: one as long stands in for it.
    let result = std::env::temp_dir().join("memsched-ingest-XXXXXXXXXX/result.json");
    let mut env: HashMap<OsString, usize> = std::env::vars_os()
        .map(|(k, v)| {
            let len = k.len() + 1 + v.len();
            (k, len)
        })
        .collect();
    for (k, v) in ctx.step_env(Action::Ingest, Some(result.into_os_string())) {
        env.insert(k.into(), k.len() + 1 + v.len());
    }
    let path = env_path();
    Limits::for_args(
        config.batch_size,
        arg_max(),
        other
            .first()
            .map_or(PATH_MAX, |p| program_len(p, path.as_deref())),
        other.iter().map(OsString::as_os_str),
        env.into_values(),
    )
}

/// "; 1 file not sent: …" for the summary, or "".
#[must_use]
pub(crate) fn unsent_text(unsent: usize) -> String {
    if unsent == 0 {
        return String::new();
    }
    let files = if unsent == 1 { "file" } else { "files" };
    format!("; {unsent} {files} not sent: too long for an argument list")
}

/// memsched's `PATH`, which the step inherits.
fn env_path() -> Option<OsString> {
    std::env::var_os("PATH")
}

/// The length of the path `execve` gets for `program`: itself when it names a path,
/// else the first executable file of that name in `path`, as execvp searches it.
fn program_len(program: &OsStr, path: Option<&OsStr>) -> usize {
    use std::os::unix::fs::PermissionsExt;
    if program.as_bytes().contains(&b'/') {
        return program.len();
    }
    let Some(path) = path else {
        return PATH_MAX;
    };
    std::env::split_paths(path)
        .map(|dir| dir.join(program))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .map_or(PATH_MAX, |found| found.as_os_str().len())
}

/// `sysconf(_SC_ARG_MAX)`; POSIX's smallest allowed value when it cannot be read.
#[must_use]
pub(crate) fn arg_max() -> usize {
    const POSIX_ARG_MAX: usize = 4096;
    nix::unistd::sysconf(nix::unistd::SysconfVar::ARG_MAX)
        .ok()
        .flatten()
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(POSIX_ARG_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batches(pieces: &[Piece]) -> Vec<Range<usize>> {
        pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Batch(r) => Some(r.clone()),
                Piece::TooLong { .. } | Piece::LineBreak { .. } => None,
            })
            .collect()
    }

    #[test]
    fn without_a_byte_limit_only_the_file_count_splits() {
        let limits = Limits {
            max_files: 3,
            room: None,
        };
        let pieces = split(&[1_000_000; 7], &limits);
        assert_eq!(batches(&pieces), [0..3, 3..6, 6..7]);
    }

    #[test]
    fn bytes_close_a_batch_before_the_count_does() {
        // Each name costs 100 + 1 + 8 = 109 bytes: three fit in 330, a fourth does not.
        let limits = Limits {
            max_files: 100,
            room: Some(330),
        };
        let pieces = split(&[100; 8], &limits);
        assert_eq!(batches(&pieces), [0..3, 3..6, 6..8]);
        for range in batches(&pieces) {
            assert!(range.len() * cost(100) <= 330);
        }
    }

    #[test]
    fn a_name_too_long_for_any_batch_fails_alone_and_the_rest_go_on() {
        let limits = Limits {
            max_files: 10,
            room: Some(300),
        };
        let pieces = split(&[50, 50, 400, 50], &limits);
        assert_eq!(pieces[0], Piece::Batch(0..2));
        assert!(
            matches!(&pieces[1], Piece::TooLong { index: 2, why } if why.contains("400 bytes"))
        );
        assert_eq!(pieces[2], Piece::Batch(3..4));
        assert_eq!(batch_count(&pieces), 2);
    }

    #[test]
    fn one_argument_longer_than_max_arg_strlen_is_refused_whatever_the_room() {
        let limits = Limits {
            max_files: 10,
            room: Some(usize::MAX / 2),
        };
        let pieces = split(&[MAX_ARG_STRLEN - 1, MAX_ARG_STRLEN], &limits);
        assert_eq!(pieces[0], Piece::Batch(0..1));
        assert!(matches!(&pieces[1], Piece::TooLong { index: 1, .. }));
    }

    #[test]
    fn the_room_is_what_the_command_and_environment_leave() {
        let args = [OsStr::new("step"), OsStr::new("--")];
        let limits = Limits::for_args(64, 10_000, 9, args, [20, 30]);
        let fixed = 10 + cost(4) + cost(2) + cost(20) + cost(30);
        assert_eq!(limits.room, Some(10_000 - fixed - HEADROOM));
        let none = Limits::for_args(64, 100, 4, [OsStr::new("step")], []);
        assert_eq!(none.room, Some(0));
        assert!(none.too_long(1).is_some());
    }

    #[test]
    fn the_program_path_is_found_as_execvp_finds_it() {
        let dir = tempfile::tempdir().unwrap();
        let program = dir.path().join("step");
        std::fs::write(&program, "").unwrap();
        let search = std::env::join_paths(["/nonexistent", dir.path().to_str().unwrap()]).unwrap();
        // Not executable: execvp passes over it.
        assert_eq!(program_len(OsStr::new("step"), Some(&search)), PATH_MAX);
        std::fs::set_permissions(
            &program,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        assert_eq!(
            program_len(OsStr::new("step"), Some(&search)),
            program.as_os_str().len()
        );
        assert_eq!(program_len(OsStr::new("./a/b"), None), 5);
        assert_eq!(program_len(OsStr::new("absent"), Some(&search)), PATH_MAX);
    }

    #[test]
    fn files_left_out_split_the_batches_around_them_and_keep_their_indices() {
        let pieces = vec![
            Piece::Batch(0..3),
            Piece::TooLong {
                index: 3,
                why: String::new(),
            },
        ];
        // Files 2 and 4 were left out: kept files 0, 1, 3, 5 are batches 0..2 and 3..4.
        let out = renumber(pieces, &[0, 1, 3, 5]);
        assert_eq!(out[0], Piece::Batch(0..2));
        assert_eq!(out[1], Piece::Batch(3..4));
        assert!(matches!(out[2], Piece::TooLong { index: 5, .. }));
        assert!(has_line_break(OsStr::new("x\n/etc/passwd.txt")));
        assert!(has_line_break(OsStr::new("x\r.txt")));
        assert!(!has_line_break(OsStr::new("x .txt")));
    }

    #[test]
    fn the_kernel_limit_is_read() {
        assert!(arg_max() >= 4096);
    }
}
