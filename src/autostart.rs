//! Starting the watcher with the user's desktop session: an XDG autostart entry
//! (`$XDG_CONFIG_HOME/autostart/memsched.desktop`) or a systemd user unit
//! (`$XDG_CONFIG_HOME/systemd/user/memsched.service`), written, removed and shown by
//! `memsched autostart`. Only files memsched wrote (they carry its marker) are removed.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::state::atomic;

/// The line that marks a file as memsched's own.
const MARKER: &str = "X-Memsched-Generated=true";

/// Where a kind of entry lives under the config folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Desktop,
    Systemd,
}

impl Kind {
    #[must_use]
    pub fn path(self, config_home: &Path) -> PathBuf {
        match self {
            Kind::Desktop => config_home.join("autostart/memsched.desktop"),
            Kind::Systemd => config_home.join("systemd/user/memsched.service"),
        }
    }
}

/// `$XDG_CONFIG_HOME`, else `$HOME/.config`.
pub fn config_home() -> Result<PathBuf> {
    let from = |var: &str| {
        std::env::var_os(var)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    from("XDG_CONFIG_HOME")
        .or_else(|| from("HOME").map(|h| h.join(".config")))
        .ok_or_else(|| Error::Usage("neither XDG_CONFIG_HOME nor HOME is set".to_owned()))
}

/// Quotes one argument for a desktop entry's `Exec=` (Desktop Entry Specification: double
/// quotes, backslash before `"`, `` ` ``, `$` and `\`; `%` doubled as field codes use it).
#[must_use]
pub fn desktop_quote(arg: &str) -> String {
    let mut out = String::from('"');
    for c in arg.chars() {
        match c {
            '"' | '`' | '$' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '%' => out.push_str("%%"),
            _ => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Quotes one argument for a systemd `ExecStart=` (double quotes with C-style escapes;
/// `%` doubled for specifiers, `$` doubled for variable expansion).
#[must_use]
pub fn systemd_quote(arg: &str) -> String {
    let mut out = String::from('"');
    for c in arg.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '%' => out.push_str("%%"),
            '$' => out.push_str("$$"),
            _ => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The text of an entry that runs `argv`.
#[must_use]
pub fn render(kind: Kind, argv: &[String]) -> String {
    match kind {
        Kind::Desktop => format!(
            "[Desktop Entry]\nType=Application\nName=memsched\n\
             Comment=Keeps the memory pipeline healthy: watches the Data folder and runs its steps\n\
             Exec={}\nTerminal=false\nNoDisplay=true\nX-GNOME-Autostart-enabled=true\n{MARKER}\n",
            argv.iter()
                .map(|a| desktop_quote(a))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Kind::Systemd => format!(
            "# {MARKER}\n[Unit]\nDescription=memsched: keeps the memory pipeline healthy\n\n\
             [Service]\nExecStart={}\nRestart=on-failure\nRestartSec=10\n\n\
             [Install]\nWantedBy=default.target\n",
            argv.iter()
                .map(|a| systemd_quote(a))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    }
}

/// The command line the session should run: this binary on these absolute paths.
pub fn watcher_argv(paths_file: &Path, rules_file: &Path) -> Result<Vec<String>> {
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

/// Writes the entry; says what to do next.
pub fn enable(kind: Kind, config_home: &Path, argv: &[String]) -> Result<String> {
    let path = kind.path(config_home);
    let write_error = |source| Error::Autostart {
        path: path.clone(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(write_error)?;
    }
    atomic::write(&path, render(kind, argv).as_bytes()).map_err(write_error)?;
    Ok(match kind {
        Kind::Desktop => format!(
            "wrote {}: the watcher starts with your next desktop session",
            path.display()
        ),
        Kind::Systemd => format!(
            "wrote {}; now run: systemctl --user daemon-reload && systemctl --user enable --now memsched.service",
            path.display()
        ),
    })
}

/// Removes the entries memsched wrote; leaves anything else alone.
pub fn disable(config_home: &Path) -> Result<Vec<String>> {
    let mut said = Vec::new();
    for kind in [Kind::Desktop, Kind::Systemd] {
        let path = kind.path(config_home);
        match std::fs::read_to_string(&path) {
            Ok(text) if text.contains(MARKER) => {
                std::fs::remove_file(&path).map_err(|source| Error::Autostart {
                    path: path.clone(),
                    source,
                })?;
                said.push(format!("removed {}", path.display()));
                if kind == Kind::Systemd {
                    said.push(
                        "also run: systemctl --user disable --now memsched.service".to_owned(),
                    );
                }
            }
            Ok(_) => said.push(format!(
                "left {}: memsched did not write it",
                path.display()
            )),
            Err(_) => {}
        }
    }
    if said.is_empty() {
        said.push("no autostart entry to remove".to_owned());
    }
    Ok(said)
}

/// Which entries exist, and what they run.
#[must_use]
pub fn status(config_home: &Path) -> Vec<String> {
    [Kind::Desktop, Kind::Systemd]
        .into_iter()
        .map(|kind| {
            let path = kind.path(config_home);
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    let exec = text
                        .lines()
                        .find(|l| l.starts_with("Exec=") || l.starts_with("ExecStart="))
                        .unwrap_or("");
                    format!("{}: {exec}", path.display())
                }
                Err(_) => format!("{}: absent", path.display()),
            }
        })
        .collect()
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
        assert_eq!(desktop_quote(r#"x"$`\%"#), r#""x\"\$\`\\%%""#);
        assert_eq!(systemd_quote(r#"x"$\%"#), r#""x\"$$\\%%""#);
    }

    #[test]
    fn entries_are_written_removed_only_when_ours_and_shown() {
        let dir = tempfile::tempdir().unwrap();
        let argv = vec![
            "/bin/memsched".to_owned(),
            "--paths".to_owned(),
            "/m/paths.json".to_owned(),
        ];
        enable(Kind::Desktop, dir.path(), &argv).unwrap();
        let text = std::fs::read_to_string(Kind::Desktop.path(dir.path())).unwrap();
        assert!(
            text.contains("Exec=\"/bin/memsched\" \"--paths\" \"/m/paths.json\"\n"),
            "{text}"
        );
        assert!(
            status(dir.path())[0].ends_with("Exec=\"/bin/memsched\" \"--paths\" \"/m/paths.json\"")
        );
        let foreign = Kind::Systemd.path(dir.path());
        std::fs::create_dir_all(foreign.parent().unwrap()).unwrap();
        std::fs::write(&foreign, "[Service]\nExecStart=/bin/other\n").unwrap();
        let said = disable(dir.path()).unwrap();
        assert!(said[0].starts_with("removed"), "{said:?}");
        assert!(said[1].starts_with("left"), "{said:?}");
        assert!(!Kind::Desktop.path(dir.path()).exists());
        assert!(foreign.exists());
    }
}
