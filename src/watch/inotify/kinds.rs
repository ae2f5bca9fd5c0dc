//! [`kinds`]: the notify event kinds one kernel event mask stands for, as notify's own
//! inotify backend says them, so [`crate::watch::change::classify`] reads both alike.

use ::inotify::EventMask;
use notify::EventKind;
use notify::event::{
    AccessKind, AccessMode, CreateKind, DataChange, MetadataKind, ModifyKind, RemoveKind,
    RenameMode,
};

/// The notify kinds one kernel event stands for, in the order notify's backend sends them.
/// Each half of a rename stands alone: `classify` ignores the pair.
pub(super) fn kinds(mask: EventMask) -> Vec<EventKind> {
    let folder = mask.contains(EventMask::ISDIR);
    let table = [
        (
            EventMask::MOVED_FROM,
            EventKind::Modify(ModifyKind::Name(RenameMode::From)),
        ),
        (
            EventMask::MOVED_TO,
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
        ),
        (
            EventMask::MOVE_SELF,
            EventKind::Modify(ModifyKind::Name(RenameMode::From)),
        ),
        (
            EventMask::CREATE,
            EventKind::Create(if folder {
                CreateKind::Folder
            } else {
                CreateKind::File
            }),
        ),
        (
            EventMask::DELETE,
            EventKind::Remove(if folder {
                RemoveKind::Folder
            } else {
                RemoveKind::File
            }),
        ),
        // Only folders asked for by name report their own removal.
        (
            EventMask::DELETE_SELF,
            EventKind::Remove(RemoveKind::Folder),
        ),
        (
            EventMask::MODIFY,
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
        ),
        (
            EventMask::CLOSE_WRITE,
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
        ),
        (
            EventMask::ATTRIB,
            EventKind::Modify(ModifyKind::Metadata(MetadataKind::Any)),
        ),
        // Never asked for (see CHANGES), but said as notify says them should a mask ask.
        (
            EventMask::CLOSE_NOWRITE,
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
        ),
        (
            EventMask::OPEN,
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
        ),
    ];
    table
        .into_iter()
        .filter(|(bit, _)| mask.contains(*bit))
        .map(|(_, kind)| kind)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_masks_map_to_notify_kinds() {
        assert_eq!(
            kinds(EventMask::CREATE | EventMask::ISDIR),
            [EventKind::Create(CreateKind::Folder)]
        );
        assert_eq!(
            kinds(EventMask::DELETE),
            [EventKind::Remove(RemoveKind::File)]
        );
        assert_eq!(
            kinds(EventMask::ATTRIB),
            [EventKind::Modify(ModifyKind::Metadata(MetadataKind::Any))]
        );
        assert_eq!(
            kinds(EventMask::MOVE_SELF),
            [EventKind::Modify(ModifyKind::Name(RenameMode::From))]
        );
        assert_eq!(
            kinds(EventMask::OPEN),
            [EventKind::Access(AccessKind::Open(AccessMode::Any))]
        );
    }
}
