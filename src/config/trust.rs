//! StrictModes (issue 10 item 3), in the manner of OpenSSH's: memsched runs the commands
//! that the rules file names, in folders that paths.json names, and a task's own
//! `command` from task_queue.json; so each of these must be writable only by the user
//! memsched runs as. The one home of that rule.
//!
//! A file or folder passes when it is owned by the user or by root, is not writable by
//! others, and is writable by its group only when that group is the user's *private*
//! group (the user private group scheme of Debian-family systems, whose umask 002 makes
//! every new file group-writable): the user's primary group, named as the user, with no
//! other members listed. The folder holding a checked file passes the same test, since
//! whoever can write that folder can replace the file; a world-writable folder with the
//! sticky bit (`/tmp`) is allowed there, as others cannot replace a file they do not own.
//!
//! What a command runs (its program, found on `PATH`, and a script its arguments name) is
//! judged by [`check_executable`]: the file and every folder above it, up to the root,
//! through every link (issue 21 item 3).

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Uid};

use crate::config::acl::{self, Kind};
use crate::os::accounts;

use crate::error::{Error, Result};

/// Checks `path` (a rules file, paths.json, task_queue.json) and the folder holding it.
/// A path that does not exist passes: whoever reads it reports that.
pub(crate) fn check_file(path: &Path) -> Result<()> {
    check(path, Role::Itself)?;
    let folder = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    check(folder, Role::Holds(path))
}

/// Checks a folder memsched keeps state in (the state folder) itself.
pub(crate) fn check_folder(path: &Path) -> Result<()> {
    check(path, Role::Itself)
}

/// Checks a file memsched has run (a command's program or script, an absolute path) and
/// every folder above it up to the root, since whoever can write any of them can put
/// another file in its place. Each link on the way is followed hop by hop, and the
/// folders above each hop and above the resolved file are judged too: `/usr/bin/python3`
/// names `/etc/alternatives/python3`, which names the file that runs.
pub(crate) fn check_executable(path: &Path) -> Result<()> {
    check(path, Role::Itself)?;
    let mut judged = HashSet::new();
    let mut hop = path.to_path_buf();
    // The kernel follows at most 40 links in a path; so does this.
    for _ in 0..40 {
        check_folders_above(&hop, path, &mut judged)?;
        let Ok(target) = std::fs::read_link(&hop) else {
            break;
        };
        hop = hop.parent().unwrap_or(Path::new("/")).join(target);
    }
    if let Ok(real) = std::fs::canonicalize(path) {
        check_folders_above(&real, path, &mut judged)?;
    }
    Ok(())
}

/// Checks every folder above `hop` (on the way to `file`), skipping those `judged`.
fn check_folders_above(hop: &Path, file: &Path, judged: &mut HashSet<PathBuf>) -> Result<()> {
    for (depth, folder) in hop.ancestors().skip(1).enumerate() {
        if folder.as_os_str().is_empty() || !judged.insert(folder.to_path_buf()) {
            continue;
        }
        let role = if depth == 0 && hop == file {
            Role::Holds(file)
        } else {
            Role::Above(file)
        };
        check(folder, role)?;
    }
    Ok(())
}

/// What a checked path is to what memsched uses, for the error's words.
#[derive(Clone, Copy)]
enum Role<'a> {
    /// The file or folder memsched uses.
    Itself,
    /// The folder holding this file.
    Holds(&'a Path),
    /// A folder further above this file (or above a link on the way to it).
    Above(&'a Path),
}

/// Checks `path` in its `role`; an error names the file memsched uses.
fn check(path: &Path, role: Role<'_>) -> Result<()> {
    // Followed, as OpenSSH does: a rules file kept in a dotfiles repository and linked
    // into place is judged by what it is.
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(());
    };
    let me = Uid::effective();
    let mode = meta.mode() & 0o7777;
    let owner = Uid::from_raw(meta.uid());
    let group = Gid::from_raw(meta.gid());
    let shown = || {
        format!(
            "mode {mode:04o}, owner {}, group {}",
            user_name(owner),
            group_name(group)
        )
    };
    let holds = match role {
        Role::Itself => None,
        Role::Holds(file) | Role::Above(file) => Some(file),
    };
    let untrusted = |why: String, fix: String| Error::Untrusted {
        path: holds.unwrap_or(path).to_path_buf(),
        why: format!("{why} ({})", shown()),
        fix,
    };
    let what = match (role, meta.is_dir()) {
        (Role::Itself, false) => "it".to_owned(),
        (Role::Itself, true) => "this folder".to_owned(),
        (Role::Holds(_), _) => format!("the folder holding it, {},", path.display()),
        (Role::Above(_), _) => format!("a folder above it, {},", path.display()),
    };
    let target = path.display();
    if owner != me && !owner.is_root() {
        return Err(untrusted(
            format!(
                "{what} is owned by {}, not by you ({}) or root",
                user_name(owner),
                user_name(me)
            ),
            format!("chown {} {target}", user_name(me)),
        ));
    }
    let sticky_folder = holds.is_some() && meta.is_dir() && mode & 0o1000 != 0;
    if mode & 0o002 != 0 && !sticky_folder {
        return Err(untrusted(
            format!("{what} is writable by others"),
            format!("chmod go-w {target}"),
        ));
    }
    if mode & 0o020 != 0 && !is_private_group(group, me) {
        return Err(untrusted(
            format!(
                "{what} is writable by group {}, which is not your private group",
                group_name(group)
            ),
            format!("chmod go-w {target}"),
        ));
    }
    // With an ACL the mode's group bits are only its mask: the entries say who can write.
    if let Some(acl) = acl::writers(path, Kind::Access)
        && let Some((why, entry)) = acl_writer(&acl, me)
    {
        return Err(untrusted(
            format!("{what} is writable by {why} through an ACL entry"),
            format!("setfacl -x {entry} {target}"),
        ));
    }
    // A folder's default ACL is what every file memsched writes there (atomically, so as
    // a new file) will carry.
    if meta.is_dir()
        && let Some(acl) = acl::writers(path, Kind::Default)
    {
        let writer = acl_writer(&acl, me).map(|(why, _)| why);
        if let Some(why) = writer.or_else(|| acl.others.then(|| "others".to_owned())) {
            let folder = match role {
                Role::Itself => "this folder".to_owned(),
                Role::Holds(_) => format!("the folder holding it, {target},"),
                Role::Above(_) => format!("a folder above it, {target},"),
            };
            return Err(untrusted(
                format!("files created in {folder} would be writable by {why} (its default ACL)"),
                format!("setfacl -k {target}"),
            ));
        }
    }
    Ok(())
}

/// The first writer an ACL names that is neither the user, root, nor the user's private
/// group, as ("user NAME", "u:NAME") or ("group NAME", "g:NAME"): words and setfacl entry.
fn acl_writer(acl: &acl::Writers, me: Uid) -> Option<(String, String)> {
    let user = acl
        .users
        .iter()
        .map(|&uid| Uid::from_raw(uid))
        .find(|&uid| uid != me && !uid.is_root())
        .map(|uid| {
            let entry = accounts::user(uid.as_raw()).map_or(uid.to_string(), |u| u.name);
            (format!("user {}", user_name(uid)), format!("u:{entry}"))
        });
    let group = || {
        acl.groups
            .iter()
            .map(|&gid| Gid::from_raw(gid))
            .find(|&gid| !is_private_group(gid, me))
            .map(|gid| {
                let entry = accounts::group(gid.as_raw()).map_or(gid.to_string(), |g| g.name);
                (format!("group {}", group_name(gid)), format!("g:{entry}"))
            })
    };
    user.or_else(group)
}

/// Whether `gid` is `uid`'s private group: its primary group, named as the user, with no
/// other members.
fn is_private_group(gid: Gid, uid: Uid) -> bool {
    let (Some(user), Some(group)) = (accounts::user(uid.as_raw()), accounts::group(gid.as_raw()))
    else {
        return false;
    };
    user.gid == gid.as_raw()
        && group.name == user.name
        && group.members.iter().all(|m| *m == user.name)
}

fn user_name(uid: Uid) -> String {
    accounts::user(uid.as_raw()).map_or_else(|| format!("uid {uid}"), |user| user.name)
}

fn group_name(gid: Gid) -> String {
    accounts::group(gid.as_raw()).map_or_else(|| format!("gid {gid}"), |group| group.name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_file_only_its_owner_can_write_passes_and_others_writable_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("watch-rules.toml");
        std::fs::write(&file, "").unwrap();
        chmod(&file, 0o644);
        check_file(&file).unwrap();
        chmod(&file, 0o666);
        let e = check_file(&file).unwrap_err().to_string();
        assert!(e.contains("writable by others"), "{e}");
        assert!(e.contains("mode 0666"), "{e}");
        chmod(&file, 0o644);
        chmod(dir.path(), 0o777);
        let e = check_file(&file).unwrap_err().to_string();
        assert!(
            e.contains("watch-rules.toml: the folder holding it, "),
            "{e}"
        );
        assert!(e.contains(", is writable by others (mode 0777"), "{e}");
        chmod(dir.path(), 0o1777);
        check_file(&file).unwrap();
        chmod(dir.path(), 0o700);
    }

    #[test]
    fn an_executable_is_judged_through_every_link_and_every_folder_above_it() {
        let dir = tempfile::tempdir().unwrap();
        let (real, bin) = (dir.path().join("real"), dir.path().join("bin"));
        std::fs::create_dir(&real).unwrap();
        std::fs::create_dir(&bin).unwrap();
        std::fs::write(real.join("prog"), "").unwrap();
        chmod(&real.join("prog"), 0o755);
        let link = bin.join("prog");
        std::os::unix::fs::symlink("../real/prog", &link).unwrap();
        check_executable(&link).unwrap();
        // The folder holding what the link names: anyone could swap the program.
        chmod(&real, 0o777);
        let e = check_executable(&link).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("{}: a folder above it, ", link.display())),
            "{e}"
        );
        assert!(e.contains("/real, is writable by others (mode 0777"), "{e}");
        chmod(&real, 0o755);
        // A folder two levels above the link.
        chmod(dir.path(), 0o777);
        let e = check_executable(&link).unwrap_err().to_string();
        let above = format!(
            "a folder above it, {}, is writable by others",
            dir.path().display()
        );
        assert!(e.contains(&above), "{e}");
        chmod(dir.path(), 0o700);
        chmod(&real.join("prog"), 0o757);
        let e = check_executable(&link).unwrap_err().to_string();
        assert!(
            e.contains("prog: it is writable by others (mode 0757"),
            "{e}"
        );
    }

    #[test]
    fn a_missing_file_passes_for_its_reader_to_report() {
        check_file(Path::new("/nonexistent/paths.json")).unwrap();
    }
}
