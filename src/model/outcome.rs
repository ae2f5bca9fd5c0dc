//! [`Outcome`]: how an action's turn in a run ended, as scheduler_log.json, `--json`,
//! `log` and `status` name it. A shared noun: the record, its readers and the command
//! line's `--outcome` filter all name outcomes, so this module depends on nothing.

use serde::{Deserialize, Serialize};

/// How an action's turn in a run ended. The written form is kebab-case
/// (`nothing-to-do`); renaming a variant changes the file format (see the golden tests of
/// `state::scheduler_log`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The plan found work and the step ran.
    Ran,
    /// The plan found nothing to do.
    NothingToDo,
    /// `--dry-run`: the plan found work that a real run would do.
    WouldRun,
    /// Not run: not configured, or another process holds its lock.
    Skipped,
    /// It could not do its work; `error` says why.
    Failed,
    /// A second Ctrl-C (or SIGTERM) ended its step's process group.
    Interrupted,
}

impl Outcome {
    /// The outcome for people: the written form with spaces ("nothing to do").
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Ran => "ran",
            Outcome::NothingToDo => "nothing to do",
            Outcome::WouldRun => "would run",
            Outcome::Skipped => "skipped",
            Outcome::Failed => "failed",
            Outcome::Interrupted => "interrupted",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `status` showed the written form with its dashes as spaces before it read outcomes
    /// typed; the label must stay that.
    #[test]
    fn the_label_is_the_written_form_with_spaces() {
        for outcome in [
            Outcome::Ran,
            Outcome::NothingToDo,
            Outcome::WouldRun,
            Outcome::Skipped,
            Outcome::Failed,
            Outcome::Interrupted,
        ] {
            let written = serde_json::to_value(outcome).unwrap();
            assert_eq!(written.as_str().unwrap().replace('-', " "), outcome.label());
            assert_eq!(serde_json::from_value::<Outcome>(written).unwrap(), outcome);
        }
    }
}
