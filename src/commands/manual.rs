//! The manual page, memsched(1), in one page: clap's description of the command line (every
//! option and every subcommand with its own options, so nothing points at a page that does
//! not exist), then the reference kept by hand in doc/man/ (configuration, environment,
//! files, exit status). `memsched man --install` puts it where man(1) finds it.

use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// CONFIGURATION: paths.json and every watch-rules.toml key (README.md's Configuration).
const CONFIGURATION: &str = include_str!("../../doc/man/configuration.roff");
/// ENVIRONMENT, FILES, EXIT STATUS, EXAMPLES, SEE ALSO.
const REFERENCE: &str = include_str!("../../doc/man/reference.roff");

/// What clap_mangen writes before every piece it renders: the apostrophe string `Aq`.
const PREAMBLE: [&str; 2] = [".ie \\n(.g .ds Aq \\(aq", ".el .ds Aq '"];

/// Writes the whole page (roff) for `command`, the command line as clap describes it.
pub(crate) fn render(command: clap::Command, out: &mut dyn Write) -> io::Result<()> {
    let mut command = command.disable_help_subcommand(true);
    command.build();
    let name = command.get_name().to_owned();
    let page = clap_mangen::Man::new(command.clone()).manual("User Commands");
    let mut text = PREAMBLE.join("\n") + "\n";
    text += &piece(|w| page.render_title(w))?;
    // Hyphenated option names and keys would not survive a copy and paste: no hyphenation
    // (`HY` is what groff's man macros restore at every paragraph), ragged right.
    text += ".nr HY 0\n.nh\n.ad l\n";
    text += &piece(|w| page.render_name_section(w))?;
    text += ".SH SYNOPSIS\n";
    text += &synopsis(&command, &name, false);
    for (path, sub) in leaves(&command, &name) {
        text += &synopsis(sub, &path, true);
    }
    text += &piece(|w| page.render_description_section(w))?;
    text += &piece(|w| page.render_options_section(w))?;
    text += &commands_section(&command, &name)?;
    text += CONFIGURATION;
    text += REFERENCE;
    out.write_all(text.as_bytes())
}

/// `memsched man --install`: writes the page to `DATA_HOME/man/man1/NAME.1`, replacing an
/// older one atomically (readable by all, as installed documentation is). Returns where.
pub(crate) fn install(command: clap::Command, data_home: &Path) -> Result<PathBuf> {
    let folder = data_home.join("man").join("man1");
    let target = folder.join(format!("{}.1", command.get_name()));
    let failed = |source: io::Error| Error::Output {
        what: "manual page",
        source: io::Error::new(source.kind(), format!("{}: {source}", target.display())),
    };
    std::fs::create_dir_all(&folder).map_err(failed)?;
    let mut page = tempfile::NamedTempFile::new_in(&folder).map_err(failed)?;
    render(command, page.as_file_mut()).map_err(failed)?;
    page.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(failed)?;
    page.persist(&target).map_err(|e| failed(e.error))?;
    Ok(target)
}

/// What to do when `man` would not find the installed page: man-db looks in `../share/man`
/// beside each folder on PATH, so `~/.local/share/man` is searched only while `~/.local/bin`
/// is on PATH. `None` when `manpath` lists the folder, or there is no `manpath` to ask.
pub(crate) fn unseen_by_man(page: &Path) -> Option<String> {
    let root = page.parent()?.parent()?;
    let output = std::process::Command::new("manpath")
        .arg("-q")
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let searched = String::from_utf8_lossy(&output.stdout);
    if searched.trim().split(':').any(|dir| Path::new(dir) == root) {
        return None;
    }
    // man-db's own rule: DIR/../share/man for each DIR on PATH.
    let bin = root.parent()?.parent()?.join("bin");
    Some(format!(
        "man does not search {root} yet: put {bin} on PATH (man looks in ../share/man beside \
         every folder on PATH), or add `export MANPATH=\"{root}:\"` to your shell's profile \
         (the trailing colon keeps the system's pages)",
        root = root.display(),
        bin = bin.display()
    ))
}

/// Where `man --install` writes under: `$XDG_DATA_HOME`, else `~/.local/share` (the XDG
/// Base Directory default; a relative `$XDG_DATA_HOME` is ignored, as the spec says).
pub(crate) fn data_home() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").map(PathBuf::from)
        && dir.is_absolute()
    {
        return Ok(dir);
    }
    match std::env::var_os("HOME").map(PathBuf::from) {
        Some(home) if home.is_absolute() => Ok(home.join(".local").join("share")),
        _ => Err(Error::Usage(
            "man --install: neither $XDG_DATA_HOME nor $HOME is set to an absolute folder"
                .to_owned(),
        )),
    }
}

/// One piece clap_mangen renders, as text, without its repeated preamble.
fn piece(render: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> io::Result<String> {
    let mut buffer = Vec::new();
    render(&mut buffer)?;
    let text = String::from_utf8_lossy(&buffer);
    Ok(roff_lines(
        text.lines().filter(|line| !PREAMBLE.contains(line)),
    ))
}

/// COMMANDS: each subcommand (and each of theirs) as a subsection with its synopsis, its
/// description and its own options.
fn commands_section(command: &clap::Command, name: &str) -> io::Result<String> {
    let globals: Vec<String> = command
        .get_arguments()
        .filter(|a| a.is_global_set() && !a.is_hide_set())
        .map(option_name)
        .collect();
    let mut text = String::from(".SH COMMANDS\n");
    text += &format!(
        "Every command also takes the global options {}.\n",
        globals
            .iter()
            .map(|g| format!("\\fB{}\\fR", escape(g)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (path, sub) in subcommands(command, name) {
        text += &format!(".SS \"{}\"\n", escape(&path));
        text += &synopsis(sub, &path, true);
        let own = sub.clone().mut_args(|a| {
            // The global options are described once, above; -h is everywhere.
            if a.is_global_set() || a.get_id() == "help" {
                a.hide(true)
            } else {
                a
            }
        });
        let page = clap_mangen::Man::new(own);
        text += &without_headings(&piece(|w| page.render_description_section(w))?);
        text += &without_headings(&piece(|w| page.render_options_section(w))?);
    }
    Ok(text)
}

/// A rendered section's body: its `.SH` line gone, since it sits in a subsection.
fn without_headings(text: &str) -> String {
    let body = roff_lines(text.lines().filter(|line| !line.starts_with(".SH ")));
    if body.is_empty() {
        body
    } else {
        format!(".PP\n{body}")
    }
}

/// Every visible subcommand, depth first, with the words that run it (`memsched tasks drop`).
fn subcommands<'a>(command: &'a clap::Command, path: &str) -> Vec<(String, &'a clap::Command)> {
    command
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
        .flat_map(|sub| {
            let path = format!("{path} {}", sub.get_name());
            let mut all = vec![(path.clone(), sub)];
            all.extend(subcommands(sub, &path));
            all
        })
        .collect()
}

/// The subcommands that run something themselves (`tasks` lists; `autostart` needs one of
/// its own), for the SYNOPSIS.
fn leaves<'a>(command: &'a clap::Command, path: &str) -> Vec<(String, &'a clap::Command)> {
    subcommands(command, path)
        .into_iter()
        .filter(|(_, sub)| !sub.is_subcommand_required_set())
        .collect()
}

/// One synopsis line: the words, then each option (`[--mode MODE]...`) and argument.
/// Below the top, the global options are one `[OPTIONS]`.
fn synopsis(command: &clap::Command, path: &str, below_top: bool) -> String {
    let mut path_words = path.split(' ');
    let program = path_words.next().unwrap_or_default();
    let mut words = Vec::new();
    if below_top {
        words.push("[\\fIOPTIONS\\fR]".to_owned());
    }
    words.extend(path_words.map(|w| format!("\\fB{}\\fR", escape(w))));
    let mut shown: Vec<&clap::Arg> = command
        .get_arguments()
        .filter(|a| {
            let described_elsewhere = a.is_hide_set()
                || (below_top && a.is_global_set())
                || matches!(a.get_id().as_str(), "help" | "version");
            !described_elsewhere
        })
        .collect();
    // Options first, then the arguments, as people write them.
    shown.sort_by_key(|a| a.is_positional());
    for arg in shown {
        let value = arg
            .get_value_names()
            .and_then(|names| names.first())
            .map_or_else(|| arg.get_id().as_str().to_uppercase(), ToString::to_string);
        let repeats = matches!(
            arg.get_action(),
            clap::ArgAction::Append | clap::ArgAction::Count
        );
        let mut word = if arg.is_positional() {
            format!("\\fI{}\\fR", escape(&value))
        } else if arg.get_action().takes_values() {
            format!(
                "\\fB{}\\fR\\~\\fI{}\\fR",
                escape(&option_name(arg)),
                escape(&value)
            )
        } else {
            format!("\\fB{}\\fR", escape(&option_name(arg)))
        };
        if !arg.is_required_set() {
            word = format!("[{word}]");
        }
        if repeats {
            // `\&`: three dots ending a line are no end of sentence (no double space).
            word += "...\\&";
        }
        words.push(word);
    }
    if command.has_subcommands() && !command.is_subcommand_required_set() && !below_top {
        words.push("[\\fICOMMAND\\fR]".to_owned());
    }
    // `.SY`: the program in bold, the rest hanging under it when it wraps.
    format!(
        ".SY {}\n{}.YS\n",
        escape(program),
        roff_lines(words.iter().map(String::as_str))
    )
}

/// Lines, each ended by a newline (roff wants the last one ended too).
fn roff_lines<'a>(lines: impl Iterator<Item = &'a str>) -> String {
    lines.fold(String::new(), |mut text, line| {
        text.push_str(line);
        text.push('\n');
        text
    })
}

/// `-s` where there is one (as people type it), else `--long`.
fn option_name(arg: &clap::Arg) -> String {
    match (arg.get_short(), arg.get_long()) {
        (Some(short), _) => format!("-{short}"),
        (None, Some(long)) => format!("--{long}"),
        (None, None) => arg.get_id().to_string(),
    }
}

/// Text safe on a roff line: backslashes and hyphen-minus escaped, no control character
/// at the start.
fn escape(text: &str) -> String {
    let text = text.replace('\\', "\\e").replace('-', "\\-");
    if text.starts_with(['.', '\'']) {
        format!("\\&{text}")
    } else {
        text
    }
}
