//! Users and groups by id, for StrictModes' messages and its private-group test.
//!
//! A dynamically linked memsched asks the system (glibc's NSS: files, LDAP, sssd …). The
//! watcher is built statically to keep its idle memory small (issue 8), and glibc cannot
//! load NSS modules into a static binary (the lookup crashes), so a static build reads
//! `/etc/passwd` and `/etc/group`: an account only a directory service knows is then
//! shown by its number and its group is not taken for a private one, which refuses
//! rather than trusts.

/// A user account: its name and primary group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct User {
    pub name: String,
    pub gid: u32,
}

/// A group: its name and the members listed for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Group {
    pub name: String,
    pub members: Vec<String>,
}

/// The account of `uid`, if the system knows it.
#[cfg(not(target_feature = "crt-static"))]
#[must_use]
pub fn user(uid: u32) -> Option<User> {
    let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)).ok()??;
    Some(User {
        name: user.name,
        gid: user.gid.as_raw(),
    })
}

/// The group `gid`, if the system knows it.
#[cfg(not(target_feature = "crt-static"))]
#[must_use]
pub fn group(gid: u32) -> Option<Group> {
    let group = nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid)).ok()??;
    Some(Group {
        name: group.name,
        members: group.mem,
    })
}

/// The account of `uid`, from /etc/passwd.
#[cfg(target_feature = "crt-static")]
#[must_use]
pub(crate) fn user(uid: u32) -> Option<User> {
    user_in(&std::fs::read_to_string("/etc/passwd").ok()?, uid)
}

/// The group `gid`, from /etc/group.
#[cfg(target_feature = "crt-static")]
#[must_use]
pub(crate) fn group(gid: u32) -> Option<Group> {
    group_in(&std::fs::read_to_string("/etc/group").ok()?, gid)
}

/// `uid`'s line of a passwd file: `name:password:uid:gid:gecos:home:shell`.
#[cfg(any(test, target_feature = "crt-static"))]
fn user_in(passwd: &str, uid: u32) -> Option<User> {
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        let (name, id, gid) = (fields.first()?, fields.get(2)?, fields.get(3)?);
        (id.parse::<u32>().ok()? == uid).then(|| User {
            name: (*name).to_owned(),
            gid: gid.parse().unwrap_or(u32::MAX),
        })
    })
}

/// `gid`'s line of a group file: `name:password:gid:member,member`.
#[cfg(any(test, target_feature = "crt-static"))]
fn group_in(groups: &str, gid: u32) -> Option<Group> {
    groups.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        let (name, id) = (fields.first()?, fields.get(2)?);
        (id.parse::<u32>().ok()? == gid).then(|| Group {
            name: (*name).to_owned(),
            members: fields
                .get(3)
                .map(|m| {
                    m.split(',')
                        .filter(|m| !m.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_and_group_lines_are_read_by_id() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n# a comment\nann:x:1000:1000:Ann:/home/ann:/bin/sh\nbad line\n";
        assert_eq!(
            user_in(passwd, 1000),
            Some(User {
                name: "ann".into(),
                gid: 1000
            })
        );
        assert_eq!(user_in(passwd, 0).map(|u| u.name), Some("root".into()));
        assert_eq!(user_in(passwd, 4242), None);
        let groups = "root:x:0:\nann:x:1000:\nstaff:x:50:ann,bob\n";
        assert_eq!(
            group_in(groups, 50),
            Some(Group {
                name: "staff".into(),
                members: vec!["ann".into(), "bob".into()]
            })
        );
        assert_eq!(group_in(groups, 1000).map(|g| g.members), Some(vec![]));
        assert_eq!(group_in(groups, 7), None);
    }

    #[test]
    fn the_system_knows_root() {
        assert_eq!(user(0).map(|u| u.name), Some("root".into()));
        assert_eq!(group(0).map(|g| g.name), Some("root".into()));
    }
}
