//! [`Interest`]: which changes are worth the loop's attention, decided on notify's own
//! thread so that the rest never wake the loop. A log file written into a watched folder,
//! a file no rule matches, an editor's swap file: dropped here, silently, so that logging
//! about them cannot feed back into more events.

use std::sync::{Arc, PoisonError, RwLock};

use super::change::Change;
use crate::config::rules::Rules;
use crate::model::event_kind::EventKind;
use crate::model::scope::Scope;

/// The rules in force, shared with the loop, which replaces them on a reload.
#[derive(Debug, Clone)]
pub(crate) struct Interest {
    rules: Arc<RwLock<Rules>>,
}

impl Interest {
    #[must_use]
    pub(crate) fn new(rules: Rules) -> Interest {
        Interest {
            rules: Arc::new(RwLock::new(rules)),
        }
    }

    /// The rules changed (a reload): judge by these from now on.
    pub(crate) fn set(&self, rules: Rules) {
        *self.rules.write().unwrap_or_else(PoisonError::into_inner) = rules;
    }

    /// Whether the loop must hear of `change`. A change a rule matches, a new folder in
    /// data_dir (its files may predate its watch), and every change that is not a file's.
    #[must_use]
    pub(crate) fn wants(&self, change: &Change) -> bool {
        let Change::File {
            scope,
            rel,
            kind,
            folder,
            ..
        } = change
        else {
            return true;
        };
        let may_be_folder = *scope == Scope::Data
            && matches!(kind, EventKind::Create | EventKind::Rename)
            && *folder != Some(false);
        may_be_folder
            || !self
                .rules
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .matching(*scope, rel, *kind)
                .is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn change(scope: Scope, rel: &str, kind: EventKind, folder: Option<bool>) -> Change {
        Change::File {
            scope,
            rel: PathBuf::from(rel),
            kind,
            path: PathBuf::from("/p").join(rel),
            folder,
            settled: false,
        }
    }

    #[test]
    fn only_what_a_rule_matches_or_may_be_a_new_folder_gets_through() {
        let rules = Rules::parse(
            Path::new("watch-rules.toml"),
            "[actions.ingest]\ncommand = [\"i\", \"{files}\"]\n\
             [[rules]]\nname = \"m\"\nin = \"data\"\npaths = [\"**/*.txt\"]\nrun = [\"ingest\"]\n",
        )
        .unwrap();
        let interest = Interest::new(rules);
        let modify = EventKind::Modify;
        assert!(interest.wants(&change(Scope::Data, "a.txt", modify, None)));
        assert!(!interest.wants(&change(Scope::Data, "a.md", modify, None)));
        assert!(
            !interest.wants(&change(Scope::State, "memsched.err", modify, None)),
            "a log file beside the state files never wakes the loop"
        );
        assert!(interest.wants(&change(Scope::Data, "inbox", EventKind::Create, Some(true))));
        assert!(interest.wants(&change(Scope::Data, "moved", EventKind::Rename, None)));
        assert!(!interest.wants(&change(Scope::Data, "x.md", EventKind::Create, Some(false))));
        assert!(interest.wants(&Change::Rescan));
    }
}
