//! Where an upload may go (issue 10, issue 18 item 2): every remote, an entry's own
//! included, must lie under the root the rules allow ([`UploadConfig::remote_root`]), so
//! whoever can write upload_log.json chooses a file under the user's drive folder and
//! nothing else: no other rclone remote or on-the-fly backend (`:local:`, `:sftp,host=…:`),
//! no absolute path, no `..`, nothing an upload command would read as an option.
//!
//! [`UploadConfig::remote_root`]: crate::config::rules::UploadConfig::remote_root

use super::entry::shown;

/// The backend a remote names, as rclone reads it: `name:` before any `/`, or an
/// on-the-fly `:backend,options:`; `None` for a plain path.
fn backend(remote: &str) -> Option<&str> {
    if let Some(rest) = remote.strip_prefix(':') {
        return Some(rest.find(':').map_or(remote, |i| &remote[..i + 2]));
    }
    let colon = remote.find(':')?;
    (!remote[..colon].contains('/')).then(|| &remote[..=colon])
}

/// Why `remote` may not be used, if it may not: it must lie under `root` (empty, or ending
/// in `/` or `:`), with the root's own backend, and below it name a relative path without
/// `..`; no control characters, no backslash (a folder separator to some tools), no
/// leading `-` (read as an option: `--config=evil.conf`).
pub(super) fn check(remote: &str, root: &str) -> std::result::Result<(), String> {
    let text = shown(remote);
    if remote.chars().any(char::is_control) {
        return Err(format!("the remote {text} holds a control character"));
    }
    if remote.starts_with('-') {
        return Err(format!(
            "the remote {text} starts with '-', which the upload command would take for an option"
        ));
    }
    if remote.contains('\\') {
        return Err(format!(
            "the remote {text} holds a backslash, which some upload tools read as a folder separator"
        ));
    }
    let (named, allowed) = (backend(remote), backend(root));
    if named != allowed {
        return Err(format!(
            "the remote {text} names the backend {}, not {} that the rules configure (remote, remote_root)",
            named.map_or_else(|| "of a plain path".to_owned(), |b| format!("{b:?}")),
            allowed.map_or_else(|| "the plain path".to_owned(), |b| format!("{b:?}"))
        ));
    }
    let Some(below) = remote.strip_prefix(root) else {
        let what = if remote.starts_with('/') {
            "is an absolute path, "
        } else {
            ""
        };
        return Err(format!(
            "the remote {text} {what}lies outside {root}, the folder the rules allow remotes in (remote_root, or the remote template's folder)"
        ));
    };
    if below.is_empty() {
        return Err(format!(
            "the remote {text} names no file under {root:?}, the folder the rules allow"
        ));
    }
    if below.starts_with('/') {
        return Err(format!(
            "the remote {text} is an absolute path below {root:?}, which leaves that folder"
        ));
    }
    if below.split('/').any(|part| part == "..") {
        return Err(format!(
            "the remote {text} has a '..' component, which climbs out of its folder"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remote_stays_under_its_root() {
        // (remote, root, the reason it is refused, or "" when it may go)
        let cases = [
            ("memory/a.txt", "memory/", ""),
            ("memory/sub/a:b.txt", "memory/", ""),
            ("drive:a/b.txt", "drive:", ""),
            ("drive:a:b.txt", "drive:", ""),
            ("a.txt", "", ""),
            ("/srv/drive/a.txt", "/srv/drive/", ""),
            ("/tmp/x.txt", "memory/", "absolute"),
            ("/tmp/x.txt", "", "absolute"),
            (":local:/tmp/x", "memory/", "backend \":local:\""),
            (":sftp,host=h:x", "drive:", "backend \":sftp,host=h:\""),
            ("gdrive:x", "drive:", "backend \"gdrive:\""),
            ("gdrive:x", "", "backend"),
            ("drive:x", "memory/", "backend"),
            ("memory/../x", "memory/", "'..'"),
            ("drive:a/../../b", "drive:", "'..'"),
            ("x/../../evil", "memory/", "outside memory/"),
            ("x/../../evil", "", "'..'"),
            ("drive:/etc/x", "drive:", "absolute"),
            ("memory/", "memory/", "names no file"),
            ("memory/a\\b", "memory/", "backslash"),
            ("memory/a\u{7}b", "memory/", "control character"),
            ("memory/a\u{0}b", "memory/", "control character"),
            ("--config=evil.conf", "", "starts with '-'"),
        ];
        for (remote, root, reason) in cases {
            match check(remote, root) {
                Ok(()) => assert_eq!(reason, "", "{remote:?} under {root:?} was let through"),
                Err(why) => assert!(
                    !reason.is_empty() && why.contains(reason),
                    "{remote:?} under {root:?}: {why}"
                ),
            }
        }
    }
}
