//! [`Placeholder`]: the `{name}` slots a configured command may hold, which action may use
//! which, and where they sit in an argument. The one definition the rules check against
//! and the runner fills.

use crate::model::action::Action;

/// One `{name}` slot of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placeholder {
    /// Ingest: one argument per file of the batch (always a whole argument).
    Files,
    /// Ingest: a temporary file listing the batch, one absolute path per line.
    List,
    /// Retry: the task's id.
    TaskId,
    /// Upload: the file's absolute path.
    Path,
    /// Upload: the file's path relative to the pipeline home.
    Relpath,
    /// Upload: where the file goes.
    Remote,
}

impl Placeholder {
    pub(crate) const ALL: [Placeholder; 6] = [
        Placeholder::Files,
        Placeholder::List,
        Placeholder::TaskId,
        Placeholder::Path,
        Placeholder::Relpath,
        Placeholder::Remote,
    ];

    #[must_use]
    pub(crate) fn name(self) -> &'static str {
        match self {
            Placeholder::Files => "files",
            Placeholder::List => "list",
            Placeholder::TaskId => "task_id",
            Placeholder::Path => "path",
            Placeholder::Relpath => "relpath",
            Placeholder::Remote => "remote",
        }
    }

    /// The slot as written in a command: `{name}`.
    #[must_use]
    pub(crate) fn slot(self) -> String {
        format!("{{{}}}", self.name())
    }

    #[must_use]
    pub(crate) fn from_name(name: &str) -> Option<Placeholder> {
        Placeholder::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The placeholders `action`'s command may use.
    #[must_use]
    pub(crate) fn of(action: Action) -> &'static [Placeholder] {
        match action {
            Action::Ingest => &[Placeholder::Files, Placeholder::List],
            Action::Retry => &[Placeholder::TaskId],
            Action::Upload => &[Placeholder::Path, Placeholder::Relpath, Placeholder::Remote],
            Action::Watchdog => &[],
        }
    }
}

/// The `{name}` slots in one argument, as (byte range of the slot, name). Names are
/// lowercase letters and `_` only, so JSON or shell braces in an argument are left alone.
#[must_use]
pub(crate) fn slots(arg: &str) -> Vec<(std::ops::Range<usize>, &str)> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(open) = arg[from..].find('{').map(|i| i + from) {
        let Some(close) = arg[open..].find('}').map(|i| i + open) else {
            break;
        };
        let name = &arg[open + 1..close];
        if !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
            out.push((open..close + 1, name));
            from = close + 1;
        } else {
            from = open + 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_ignore_other_braces() {
        let names = |a| slots(a).into_iter().map(|(_, n)| n).collect::<Vec<_>>();
        assert_eq!(names("{path}:{remote}"), ["path", "remote"]);
        assert!(names("{\"json\": 1}").is_empty());
        assert_eq!(names("{{task_id}}"), ["task_id"]);
        assert_eq!(slots("a{x}b")[0].0, 1..4);
    }

    #[test]
    fn every_action_names_known_placeholders() {
        for action in Action::ALL {
            for p in Placeholder::of(action) {
                assert_eq!(Placeholder::from_name(p.name()), Some(*p));
            }
        }
    }
}
