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

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::unistd::{Gid, Uid};

use crate::config::acl::{self, Kind};
use crate::os::accounts;

use crate::error::{Error, Result};

/// Checks `path` (a rules file, paths.json, task_queue.json) and the folder holding it.
/// A path that does not exist passes: whoever reads it reports that.
pub(crate) fn check_file(path: &Path) -> Result<()> {
    check(path, None)?;
    let folder = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    check(folder, Some(path))
}

/// Checks a folder memsched keeps state in (the state folder) itself.
pub(crate) fn check_folder(path: &Path) -> Result<()> {
    check(path, None)
}

/// Checks `path`, itself or (`holds`) as the folder holding a checked file, which the
/// error then names.
fn check(path: &Path, holds: Option<&Path>) -> Result<()> {
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
    let untrusted = |why: String, fix: String| Error::Untrusted {
        path: holds.unwrap_or(path).to_path_buf(),
        why: format!("{why} ({})", shown()),
        fix,
    };
    let what = match (holds, meta.is_dir()) {
        (None, false) => "it".to_owned(),
        (None, true) => "this folder".to_owned(),
        (Some(_), _) => format!("the folder holding it, {},", path.display()),
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
            let folder = match holds {
                None => "this folder".to_owned(),
                Some(_) => format!("the folder holding it, {target},"),
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
    fn a_missing_file_passes_for_its_reader_to_report() {
        check_file(Path::new("/nonexistent/paths.json")).unwrap();
    }
}
