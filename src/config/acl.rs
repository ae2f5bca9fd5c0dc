//! POSIX access control lists, as StrictModes needs them: which named users and groups an
//! ACL lets write a file, and which a folder's default ACL would let write the files
//! created in it (issue 18 item 1). With an ACL the mode's group bits show only the mask,
//! so the mode alone cannot say who can write.
//!
//! Read from the kernel's extended attributes (`system.posix_acl_access`,
//! `system.posix_acl_default`) rather than through libacl: the format is four bytes of
//! version and eight per entry, and memsched links statically.

use std::path::Path;

/// The kernel's ACL entry tags (linux/posix_acl_xattr.h).
const USER: u16 = 0x02;
const GROUP_OBJ: u16 = 0x04;
const GROUP: u16 = 0x08;
const MASK: u16 = 0x10;
const OTHER: u16 = 0x20;
const WRITE: u16 = 0x02;
const VERSION: u32 = 2;

/// Which ACL of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Who may access the file itself.
    Access,
    /// What files and folders created in a folder inherit.
    Default,
}

/// What an ACL lets write, beyond the owner.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Writers {
    /// Named users with write permission (after the mask).
    pub users: Vec<u32>,
    /// Named groups with write permission (after the mask).
    pub groups: Vec<u32>,
    /// Whether the owning group may write (after the mask); `None` when the ACL has no
    /// such entry.
    pub owning_group: Option<bool>,
    /// Whether others may write (default ACLs only: the access ACL's `other` is the mode).
    pub others: bool,
}

/// Reads `path`'s ACL of `kind` (links followed, as StrictModes judges what a link names).
/// `None`: no ACL, a filesystem without ACLs, or one that cannot be read (the mode then
/// tells everything there is).
#[must_use]
pub(crate) fn writers(path: &Path, kind: Kind) -> Option<Writers> {
    let name = match kind {
        Kind::Access => "system.posix_acl_access",
        Kind::Default => "system.posix_acl_default",
    };
    let mut buf = vec![0u8; 4 + 8 * 64];
    let len = rustix::fs::getxattr(path, name, &mut buf[..]).ok()?;
    parse(&buf[..len])
}

/// Parses the kernel's ACL format: a little-endian u32 version, then entries of tag u16,
/// permissions u16, id u32.
fn parse(bytes: &[u8]) -> Option<Writers> {
    let (version, entries) = bytes.split_first_chunk::<4>()?;
    if u32::from_le_bytes(*version) != VERSION || entries.len() % 8 != 0 {
        return None;
    }
    let entries: Vec<(u16, u16, u32)> = entries
        .chunks_exact(8)
        .map(|e| {
            (
                u16::from_le_bytes([e[0], e[1]]),
                u16::from_le_bytes([e[2], e[3]]),
                u32::from_le_bytes([e[4], e[5], e[6], e[7]]),
            )
        })
        .collect();
    // The mask bounds every named entry and the owning group; without one, nothing does.
    let mask = entries
        .iter()
        .find(|(tag, ..)| *tag == MASK)
        .map_or(0x7, |(_, perm, _)| *perm);
    let writes = |perm: u16| perm & mask & WRITE != 0;
    let mut found = Writers::default();
    for &(tag, perm, id) in &entries {
        match tag {
            USER if writes(perm) => found.users.push(id),
            GROUP if writes(perm) => found.groups.push(id),
            GROUP_OBJ => found.owning_group = Some(writes(perm)),
            OTHER => found.others = perm & WRITE != 0,
            _ => {}
        }
    }
    Some(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(entries: &[(u16, u16, u32)]) -> Vec<u8> {
        let mut out = VERSION.to_le_bytes().to_vec();
        for (tag, perm, id) in entries {
            out.extend(tag.to_le_bytes());
            out.extend(perm.to_le_bytes());
            out.extend(id.to_le_bytes());
        }
        out
    }

    const ANY: u32 = u32::MAX;

    /// ACL entries, then the named users and groups that can write, and the owning group.
    type Case<'a> = (&'a [(u16, u16, u32)], &'a [u32], &'a [u32], Option<bool>);

    #[test]
    fn named_entries_count_only_through_the_mask() {
        let cases: &[Case] = &[
            // getfacl: user::rw- user:nobody:rw- group::r-- mask::rw- other::r--
            (
                &[
                    (0x01, 6, ANY),
                    (USER, 6, 65534),
                    (GROUP_OBJ, 4, ANY),
                    (MASK, 6, ANY),
                    (OTHER, 4, ANY),
                ],
                &[65534],
                &[],
                Some(false),
            ),
            // The mask r-- takes write from every named entry and the owning group.
            (
                &[
                    (USER, 6, 65534),
                    (GROUP, 7, 100),
                    (GROUP_OBJ, 6, ANY),
                    (MASK, 4, ANY),
                ],
                &[],
                &[],
                Some(false),
            ),
            // Read-only named entries are no writers.
            (
                &[(USER, 4, 65534), (GROUP, 5, 100), (MASK, 7, ANY)],
                &[],
                &[],
                None,
            ),
            (
                &[(GROUP, 2, 100), (GROUP_OBJ, 6, ANY), (MASK, 7, ANY)],
                &[],
                &[100],
                Some(true),
            ),
        ];
        for (entries, users, groups, owning) in cases {
            let found = parse(&acl(entries)).unwrap();
            assert_eq!(found.users, *users, "{entries:?}");
            assert_eq!(found.groups, *groups, "{entries:?}");
            assert_eq!(found.owning_group, *owning, "{entries:?}");
        }
    }

    #[test]
    fn a_torn_or_unknown_acl_is_not_read() {
        assert_eq!(parse(&[]), None);
        assert_eq!(parse(&[2, 0, 0, 0, 1, 0]), None);
        assert_eq!(parse(&[1, 0, 0, 0]), None);
    }
}
