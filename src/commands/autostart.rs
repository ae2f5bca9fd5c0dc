//! Starting the watcher with the user's desktop session: an XDG autostart entry
//! (`$XDG_CONFIG_HOME/autostart/<name>.desktop`) or a systemd user unit
//! (`$XDG_CONFIG_HOME/systemd/user/<name>.service`), one per pipeline home, named from it
//! (`memsched-<folder>-<hash>`), so two pipelines never overwrite each other. Written,
//! removed and shown by `memsched autostart`; only files memsched wrote (they carry its
//! marker) are ever removed.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::state::atomic;

/// The line that marks a file as memsched's own.
const MARKER: &str = "X-Memsched-Generated=true";
/// The line that names the pipeline home an entry is for.
const HOME_KEY: &str = "X-Memsched-Home=";

/// Where a kind of entry lives under the config folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Kind {
    Desktop,
    Systemd,
}

impl Kind {
    const ALL: [Kind; 2] = [Kind::Desktop, Kind::Systemd];

    fn dir(self, config_home: &Path) -> PathBuf {
        match self {
            Kind::Desktop => config_home.join("autostart"),
            Kind::Systemd => config_home.join("systemd/user"),
        }
    }

    fn extension(self) -> &'static str {
        match self {
            Kind::Desktop => "desktop",
            Kind::Systemd => "service",
        }
    }

    /// The entry for the pipeline named `name` (see [`entry_name`]).
    #[must_use]
    pub(crate) fn path(self, config_home: &Path, name: &str) -> PathBuf {
        self.dir(config_home)
            .join(format!("{name}.{}", self.extension()))
    }
}

/// The entry name for a pipeline home: `memsched-<last folder>-<8 hex of its path's
/// hash>`, in the characters systemd unit names and desktop file ids both allow.
#[must_use]
pub(crate) fn entry_name(home: &Path) -> String {
    let folder: String = home
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(32)
        .collect();
    let hash = Sha256::digest(home.as_os_str().as_encoded_bytes());
    let hex = format!(
        "{:02x}{:02x}{:02x}{:02x}",
        hash[0], hash[1], hash[2], hash[3]
    );
    if folder.is_empty() {
        format!("memsched-{hex}")
    } else {
        format!("memsched-{folder}-{hex}")
    }
}

/// `$XDG_CONFIG_HOME`, else `$HOME/.config`.
pub(crate) fn config_home() -> Result<PathBuf> {
    let from = |var: &str| {
        std::env::var_os(var)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    from("XDG_CONFIG_HOME")
        .or_else(|| from("HOME").map(|h| h.join(".config")))
        .ok_or_else(|| Error::Usage("neither XDG_CONFIG_HOME nor HOME is set".to_owned()))
}

/// Quotes one argument for a desktop entry's `Exec=`. The Desktop Entry Specification
/// quotes first (backslash before `"`, `` ` ``, `$` and `\`; `%` doubled as field codes use
/// it), then the value as a whole is a string whose own escapes apply: so each backslash
/// is doubled again (a literal `\` is written `\\\\`), and a newline, tab or carriage
/// return is written as its escape.
#[must_use]
pub(crate) fn desktop_quote(arg: &str) -> String {
    let mut quoted = String::from('"');
    for c in arg.chars() {
        match c {
            '"' | '`' | '$' | '\\' => {
                quoted.push('\\');
                quoted.push(c);
            }
            '%' => quoted.push_str("%%"),
            _ => quoted.push(c),
        }
    }
    quoted.push('"');
    let mut out = String::with_capacity(quoted.len());
    for c in quoted.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            _ => out.push(c),
        }
    }
    out
}

/// Quotes one argument for a systemd `ExecStart=` (double quotes with C-style escapes;
/// `%` doubled for specifiers, `$` doubled for variable expansion).
#[must_use]
pub(crate) fn systemd_quote(arg: &str) -> String {
    let mut out = String::from('"');
    for c in arg.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '%' => out.push_str("%%"),
            '$' => out.push_str("$$"),
            _ => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A value on one line of an ini-style file (a newline would end it).
fn one_line(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

/// The text of an entry that runs `argv` for the pipeline in `home`.
#[must_use]
pub(crate) fn render(kind: Kind, home: &Path, argv: &[String]) -> String {
    let home_text = one_line(&home.to_string_lossy());
    match kind {
        Kind::Desktop => format!(
            "[Desktop Entry]\nType=Application\nName=memsched\n\
             Comment=Keeps the memory pipeline healthy: watches the Data folder and runs its steps\n\
             Exec={}\nTerminal=false\nNoDisplay=true\nX-GNOME-Autostart-enabled=true\n{MARKER}\n{HOME_KEY}{home_text}\n",
            argv.iter()
                .map(|a| desktop_quote(a))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        // Type=notify: the watcher says READY when it hears its folders, and sends
        // WATCHDOG keep-alives from its loop, so a wedged loop is restarted. Exit 2 (bad
        // configuration) and 3 (another watcher holds the lock) will not fix themselves by
        // restarting; start limits stop a crash loop. KillMode=mixed: SIGTERM goes to the
        // watcher alone, which lets a running step finish (its own process group) before
        // the stop timeout ends everything.
        Kind::Systemd => format!(
            "# {MARKER}\n# {HOME_KEY}{home_text}\n\
             [Unit]\nDescription=memsched: keeps the memory pipeline healthy\n\
             StartLimitIntervalSec=10min\nStartLimitBurst=5\n\n\
             [Service]\nType=notify\nNotifyAccess=main\nExecStart={}\n\
             Restart=on-failure\nRestartSec=10\nRestartPreventExitStatus=2 3\n\
             WatchdogSec=5min\nKillMode=mixed\nTimeoutStopSec=2min\n\n\
             [Install]\nWantedBy=default.target\n",
            argv.iter()
                .map(|a| systemd_quote(a))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    }
}

/// The command line the session should run: this binary on these absolute paths.
pub(crate) fn watcher_argv(paths_file: &Path, rules_file: &Path) -> Result<Vec<String>> {
    let text = |p: PathBuf| {
        p.into_os_string().into_string().map_err(|p: OsString| {
            Error::Usage(format!(
                "{} is not valid UTF-8; an autostart entry cannot name it",
                p.to_string_lossy()
            ))
        })
    };
    let absolute = |p: &Path| {
        std::path::absolute(p).map_err(|source| Error::ConfigRead {
            path: p.to_path_buf(),
            source,
        })
    };
    let exe = std::env::current_exe().map_err(|source| Error::OwnExecutable { source })?;
    Ok(vec![
        text(exe)?,
        "--paths".to_owned(),
        text(absolute(paths_file)?)?,
        "--rules".to_owned(),
        text(absolute(rules_file)?)?,
    ])
}

/// One entry memsched wrote, as found on disk.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Entry {
    pub kind: Kind,
    pub path: PathBuf,
    /// The pipeline home it is for (`None` for an entry from before entries named one).
    pub home: Option<PathBuf>,
    /// Its `Exec=` or `ExecStart=` line's value.
    pub exec: String,
}

/// Every entry memsched wrote, of both kinds, for any pipeline.
#[must_use]
pub(crate) fn entries(config_home: &Path) -> Vec<Entry> {
    let mut found = Vec::new();
    for kind in Kind::ALL {
        let Ok(dir) = std::fs::read_dir(kind.dir(config_home)) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = dir
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension().is_some_and(|x| x == kind.extension())
                    && p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("memsched"))
            })
            .collect();
        paths.sort();
        for path in paths {
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            if !text.contains(MARKER) {
                continue;
            }
            let home = text
                .lines()
                .find_map(|l| l.trim_start_matches("# ").strip_prefix(HOME_KEY))
                .map(|h| PathBuf::from(h.replace("\\n", "\n").replace("\\\\", "\\")));
            let exec = text
                .lines()
                .find_map(|l| l.strip_prefix("Exec=").or(l.strip_prefix("ExecStart=")))
                .unwrap_or("")
                .to_owned();
            found.push(Entry {
                kind,
                path,
                home,
                exec,
            });
        }
    }
    found
}

/// The entries for the pipeline in `home` (by the home they name, or by the name derived
/// from it).
fn entries_for(config_home: &Path, home: &Path) -> Vec<Entry> {
    let name = entry_name(home);
    entries(config_home)
        .into_iter()
        .filter(|e| {
            e.home.as_deref() == Some(home)
                || Kind::ALL
                    .iter()
                    .any(|k| k.path(config_home, &name) == e.path)
        })
        .collect()
}

/// Writes the entry for the pipeline in `home`; says what to do next. Refuses when an
/// entry of the other kind already starts this pipeline's watcher (two would race for
/// its lock, and one would keep failing).
pub(crate) fn enable(
    kind: Kind,
    config_home: &Path,
    home: &Path,
    argv: &[String],
) -> Result<String> {
    if let Some(other) = entries_for(config_home, home)
        .into_iter()
        .find(|e| e.kind != kind)
    {
        return Err(Error::Usage(format!(
            "{} already starts this pipeline's watcher; run `memsched autostart disable` first, so one watcher starts, not two",
            other.path.display()
        )));
    }
    let name = entry_name(home);
    let path = kind.path(config_home, &name);
    let write_error = |source| Error::Autostart {
        path: path.clone(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(write_error)?;
    }
    atomic::write(&path, render(kind, home, argv).as_bytes()).map_err(write_error)?;
    Ok(match kind {
        Kind::Desktop => format!(
            "wrote {}: the watcher starts with your next desktop session",
            path.display()
        ),
        Kind::Systemd => format!(
            "wrote {}; now run: systemctl --user daemon-reload && systemctl --user enable --now {name}.service",
            path.display()
        ),
    })
}

/// Removes the entries memsched wrote for the pipeline in `home`, or, with no home (no
/// paths.json here), the only pipeline's entries. A systemd unit is disabled and stopped
/// through `systemctl --user` first, while its file still exists.
pub(crate) fn disable(config_home: &Path, home: Option<&Path>) -> Result<Vec<String>> {
    let found = match home {
        Some(home) => entries_for(config_home, home),
        None => {
            let all = entries(config_home);
            let homes: std::collections::BTreeSet<_> = all.iter().map(|e| &e.home).collect();
            if homes.len() > 1 {
                let list: Vec<String> = all
                    .iter()
                    .map(|e| format!("{}", e.path.display()))
                    .collect();
                return Err(Error::Usage(format!(
                    "entries for several pipelines exist ({}); pass --paths to say which",
                    list.join(", ")
                )));
            }
            all
        }
    };
    let mut said = Vec::new();
    for entry in &found {
        if entry.kind == Kind::Systemd {
            said.extend(systemctl_disable(config_home, &entry.path));
        }
        std::fs::remove_file(&entry.path).map_err(|source| Error::Autostart {
            path: entry.path.clone(),
            source,
        })?;
        said.push(format!("removed {}", entry.path.display()));
    }
    if said.is_empty() {
        said.push("no autostart entry to remove".to_owned());
    }
    Ok(said)
}

/// `systemctl --user disable --now UNIT` before the unit file goes (afterwards systemctl
/// no longer knows the unit). Where that cannot be done (no user manager), the enablement
/// link is removed by hand and the user told how to stop a running watcher.
fn systemctl_disable(config_home: &Path, unit_path: &Path) -> Vec<String> {
    let unit = unit_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let done = Command::new("systemctl")
        .args(["--user", "disable", "--now", &unit])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if done {
        return vec![format!("stopped and disabled {unit}")];
    }
    let link = config_home
        .join("systemd/user/default.target.wants")
        .join(&unit);
    let mut said = Vec::new();
    if link.symlink_metadata().is_ok() && std::fs::remove_file(&link).is_ok() {
        said.push(format!("removed {}", link.display()));
    }
    said.push(format!(
        "systemctl --user could not disable {unit}; if its watcher runs, stop it: systemctl --user stop {unit} && systemctl --user daemon-reload"
    ));
    said
}

/// The entries there are, this pipeline's first; text lines and the JSON form.
#[must_use]
pub(crate) fn status(config_home: &Path, home: Option<&Path>) -> (Vec<String>, Vec<Entry>) {
    let mut all = entries(config_home);
    if let Some(home) = home {
        let ours = entries_for(config_home, home);
        all.retain(|e| !ours.iter().any(|o| o.path == e.path));
        all.splice(0..0, ours);
    }
    let mut lines: Vec<String> = all
        .iter()
        .map(|e| {
            let this = home.is_some_and(|h| e.home.as_deref() == Some(h));
            format!(
                "{}{}: {}",
                e.path.display(),
                if this { " (this pipeline)" } else { "" },
                e.exec
            )
        })
        .collect();
    if lines.is_empty() {
        lines.push(format!(
            "no autostart entry in {} or {}",
            Kind::Desktop.dir(config_home).display(),
            Kind::Systemd.dir(config_home).display()
        ));
    }
    (lines, all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_quoted_for_each_format() {
        assert_eq!(
            desktop_quote("/home/a b/memsched"),
            "\"/home/a b/memsched\""
        );
        // Quoting, then the string escape: a backslash is four, `$` is `\\$`.
        assert_eq!(desktop_quote(r#"x"$`\%"#), r#""x\\"\\$\\`\\\\%%""#);
        assert_eq!(systemd_quote(r#"x"$\%"#), r#""x\"$$\\%%""#);
    }

    #[test]
    fn entry_names_differ_per_home_and_keep_to_safe_characters() {
        let a = entry_name(Path::new("/home/u/my memory"));
        let b = entry_name(Path::new("/srv/my memory"));
        assert!(a.starts_with("memsched-my_memory-"), "{a}");
        assert_ne!(a, b);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
    }

    #[test]
    fn entries_are_written_removed_only_when_ours_and_shown() {
        let dir = tempfile::tempdir().unwrap();
        let home = Path::new("/m");
        let argv = vec![
            "/bin/memsched".to_owned(),
            "--paths".to_owned(),
            "/m/paths.json".to_owned(),
        ];
        enable(Kind::Desktop, dir.path(), home, &argv).unwrap();
        let path = Kind::Desktop.path(dir.path(), &entry_name(home));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("Exec=\"/bin/memsched\" \"--paths\" \"/m/paths.json\"\n"),
            "{text}"
        );
        let (lines, _) = status(dir.path(), Some(home));
        assert!(lines[0].contains("(this pipeline)"), "{lines:?}");
        let foreign = dir.path().join("systemd/user/memsched-other.service");
        std::fs::create_dir_all(foreign.parent().unwrap()).unwrap();
        std::fs::write(&foreign, "[Service]\nExecStart=/bin/other\n").unwrap();
        let said = disable(dir.path(), Some(home)).unwrap();
        assert!(said[0].starts_with("removed"), "{said:?}");
        assert!(!path.exists());
        assert!(foreign.exists());
    }
}
