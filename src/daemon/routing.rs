//! Routing one [`Change`] to what the loop does about it: the actions to wake and why, or a
//! named decision (ignore it and why, reload the rules, pause, the canary, rescan). Pure,
//! like the [`Scheduler`](super::scheduler::Scheduler): what routing cannot see itself (is
//! the path a folder? did the state file's content change?) the loop finds out first,
//! asked by [`needs`], and passes in as [`Facts`]. The reasons are the words the run log
//! and the tests read, so they stay word for word.

use std::path::{Path, PathBuf};

use super::baseline::Verdict;
use crate::config::rules::Rules;
use crate::model::action::Action;
use crate::model::event_kind::EventKind;
use crate::model::file_key;
use crate::model::scope::Scope;
use crate::watch::Change;

/// One action to wake, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Wake {
    pub(super) action: Action,
    pub(super) reason: String,
}

/// What the loop does about a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Route {
    /// Wake these actions. `deferred`: the watcher is paused, so they wait for the resume.
    Wake { wakes: Vec<Wake>, deferred: bool },
    /// Nothing to do, and why (the text after "ignored " in the debug log).
    Ignored(String),
    /// The rules file was written: reload it.
    Rules,
    /// The pause marker changed: runs now wait (`paused`) or not. Whether that differs
    /// from before is the loop's to tell (it also re-reads the marker without an event).
    Pause { paused: bool },
    /// The watcher's own canary came back.
    Canary,
    /// The watcher lost events: reconcile everything.
    Rescan,
    /// A folder on the way to the upload sources appeared: watch it, then wake these.
    SourceFolder(Vec<Wake>),
    /// data_dir itself went or came back: watch it afresh and reconcile everything.
    Root,
}

/// What the loop knows about the world when it routes a change. Each file-system fact is
/// gathered only when [`needs`] asks for it; otherwise it keeps its default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Facts {
    /// Runs wait for the pause marker to go (the scheduler's state, no I/O).
    pub(super) paused: bool,
    /// The pause marker exists now.
    pub(super) pause_marker: bool,
    /// The changed path is a folder.
    pub(super) is_dir: bool,
    /// What the state file's change amounts to. Judging it records the new content as the
    /// baseline, so it is judged only when a rule would act on it.
    pub(super) verdict: Option<Verdict>,
}

/// The file-system facts a change's route depends on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Needs {
    /// Whether the pause marker exists.
    pub(super) pause_marker: bool,
    /// Whether this path is a folder.
    pub(super) is_dir: Option<PathBuf>,
    /// The verdict on this state file.
    pub(super) verdict: Option<PathBuf>,
}

/// Which facts the loop must gather before routing `change`.
#[must_use]
pub(super) fn needs(change: &Change, rules: &Rules) -> Needs {
    match change {
        Change::Pause => Needs {
            pause_marker: true,
            ..Needs::default()
        },
        Change::File {
            scope,
            rel,
            kind,
            path,
            folder,
            ..
        } => Needs {
            pause_marker: false,
            // inotify says whether a created path is a folder; a renamed one must be asked.
            is_dir: (folder.is_none() && may_be_new_folder(*scope, *kind)).then(|| path.clone()),
            verdict: (*scope == Scope::State && !rules.matching(*scope, rel, *kind).is_empty())
                .then(|| path.clone()),
        },
        Change::Rules | Change::Canary | Change::Rescan | Change::Root | Change::Source { .. } => {
            Needs::default()
        }
    }
}

/// A data change that names a folder if the path is one: a folder made, renamed (either
/// side) or removed. A folder moved out of data_dir takes its memories with it, and the
/// plan finds them gone under it (issue 17).
fn may_be_new_folder(scope: Scope, kind: EventKind) -> bool {
    scope == Scope::Data
        && matches!(
            kind,
            EventKind::Create | EventKind::Rename | EventKind::Remove
        )
}

/// What to do about `change` under `rules`, given the `facts` [`needs`] asked for.
#[must_use]
pub(super) fn route(change: &Change, rules: &Rules, facts: &Facts) -> Route {
    match change {
        Change::Rescan => Route::Rescan,
        Change::Root => Route::Root,
        Change::Rules => Route::Rules,
        Change::Pause => Route::Pause {
            paused: facts.pause_marker,
        },
        Change::Canary => Route::Canary,
        Change::File {
            scope,
            rel,
            kind,
            folder,
            ..
        } => route_file(
            *scope,
            rel,
            *kind,
            rules,
            &Facts {
                is_dir: folder.unwrap_or(facts.is_dir),
                ..facts.clone()
            },
        ),
        Change::Source { rel, kind, folder } => route_source(rel, *kind, *folder, facts),
    }
}

/// A file the upload `sources` match: the upload action queues it (the link that carries
/// an index that ingest rewrote to the drive without waiting for the tick).
fn route_source(rel: &Path, kind: EventKind, folder: bool, facts: &Facts) -> Route {
    let shown = file_key::display(rel);
    if folder {
        return Route::SourceFolder(vec![Wake {
            action: Action::Upload,
            reason: format!("new folder {shown}: upload sources may be in it"),
        }]);
    }
    Route::Wake {
        wakes: vec![Wake {
            action: Action::Upload,
            reason: format!("{} {shown} (upload sources)", kind.name()),
        }],
        deferred: facts.paused,
    }
}

/// A file change: which rules match, and for a state file whether the change matters.
fn route_file(scope: Scope, rel: &Path, kind: EventKind, rules: &Rules, facts: &Facts) -> Route {
    let shown = file_key::display(rel);
    if may_be_new_folder(scope, kind) && facts.is_dir {
        // inotify watches a new folder only after hearing of it; files written into it
        // before then make no event. The plans find them: wake every data rule.
        let wakes = rules
            .rules
            .iter()
            .filter(|r| r.scope == Scope::Data)
            .flat_map(|rule| {
                rule.run.iter().map(|action| Wake {
                    action: *action,
                    reason: if kind == EventKind::Remove {
                        format!(
                            "removed folder {shown}: its memories went with it (rule \"{}\")",
                            rule.name
                        )
                    } else {
                        format!(
                            "new folder {shown}: reconcile what it holds (rule \"{}\")",
                            rule.name
                        )
                    },
                })
            })
            .collect();
        return Route::Wake {
            wakes,
            deferred: false,
        };
    }
    let matching = rules.matching(scope, rel, kind);
    if matching.is_empty() {
        return Route::Ignored(format!("{} {shown}: no rule matches", kind.name()));
    }
    if scope == Scope::State {
        match &facts.verdict {
            // Not judged means nothing to compare with: a needless run costs a plan from
            // disk, a wrongly ignored change costs the work it announced.
            None | Some(Verdict::Changed) => {}
            Some(Verdict::OwnWrite) => {
                return Route::Ignored(format!("{shown}: memsched's own write"));
            }
            Some(Verdict::Unchanged(what)) => {
                return Route::Ignored(format!("{shown}: {what} did not change"));
            }
            Some(Verdict::Unreadable(e)) => {
                return Route::Ignored(format!(
                    "{shown}: does not parse yet ({e}); waiting for its writer's next event"
                ));
            }
        }
    }
    let wakes = matching
        .iter()
        .flat_map(|rule| {
            rule.run.iter().map(|action| Wake {
                action: *action,
                reason: format!("{} {shown} (rule \"{}\")", kind.name(), rule.name),
            })
        })
        .collect();
    Route::Wake {
        wakes,
        deferred: facts.paused,
    }
}

#[cfg(test)]
mod tests {
    //! Changes and facts in, routes out: no file system, no scheduler.
    use super::*;
    use pretty_assertions::assert_eq;

    const RULES: &str = "\
        [actions.ingest]\ncommand = [\"i\", \"{files}\"]\n\
        [actions.retry]\ncommand = [\"r\", \"{task_id}\"]\n\
        [actions.upload]\ncommand = [\"u\"]\n\
        [[rules]]\nname = \"memories\"\nin = \"data\"\npaths = [\"**/*.txt\"]\nrun = [\"ingest\"]\n\
        [[rules]]\nname = \"sync\"\nin = \"data\"\npaths = [\"**/*.md\"]\nrun = [\"upload\"]\n\
        [[rules]]\nname = \"queue\"\nin = \"state\"\npaths = [\"task_queue.json\"]\nrun = [\"retry\"]\n";

    fn rules() -> Rules {
        Rules::parse(Path::new("watch-rules.toml"), RULES).unwrap()
    }

    fn file(scope: Scope, rel: &str, kind: EventKind) -> Change {
        Change::File {
            scope,
            rel: PathBuf::from(rel),
            kind,
            path: PathBuf::from("/p").join(rel),
            folder: None,
            settled: false,
        }
    }

    fn wake(action: Action, reason: &str) -> Wake {
        Wake {
            action,
            reason: reason.to_owned(),
        }
    }

    fn wakes(wakes: Vec<Wake>) -> Route {
        Route::Wake {
            wakes,
            deferred: false,
        }
    }

    fn verdict(v: Verdict) -> Facts {
        Facts {
            verdict: Some(v),
            ..Facts::default()
        }
    }

    type Case = (&'static str, Change, Facts, Route);

    fn check(cases: Vec<Case>) {
        let rules = rules();
        for (case, change, facts, want) in cases {
            assert_eq!(route(&change, &rules, &facts), want, "{case}");
        }
    }

    const PAUSED: Facts = Facts {
        paused: true,
        pause_marker: false,
        is_dir: false,
        verdict: None,
    };

    #[test]
    fn data_changes_wake_their_rules_actions_and_new_folders_every_data_rule() {
        use Action::{Ingest, Upload};
        use EventKind::{Create, Modify, Remove, Rename};
        use Scope::Data;
        let folder = Facts {
            is_dir: true,
            ..Facts::default()
        };
        let new_folder =
            |name: &str| format!("new folder inbox: reconcile what it holds (rule \"{name}\")");
        let every_data_rule = wakes(vec![
            wake(Ingest, &new_folder("memories")),
            wake(Upload, &new_folder("sync")),
        ]);
        check(vec![
            (
                "a matching data file wakes its rule's action",
                file(Data, "a.txt", Create),
                Facts::default(),
                wakes(vec![wake(Ingest, "create a.txt (rule \"memories\")")]),
            ),
            (
                "the rule's path glob reaches into folders",
                file(Data, "inbox/b.md", Remove),
                Facts::default(),
                wakes(vec![wake(Upload, "remove inbox/b.md (rule \"sync\")")]),
            ),
            (
                "an unmatched file is ignored, saying so",
                file(Data, "notes.pdf", Modify),
                Facts::default(),
                Route::Ignored("modify notes.pdf: no rule matches".to_owned()),
            ),
            (
                "a new folder wakes every data rule",
                file(Data, "inbox", Create),
                folder.clone(),
                every_data_rule.clone(),
            ),
            (
                "a folder renamed into data_dir is a new folder too",
                file(Data, "inbox", Rename),
                folder.clone(),
                every_data_rule,
            ),
            (
                "a modified folder is no new folder",
                file(Data, "inbox", Modify),
                folder,
                Route::Ignored("modify inbox: no rule matches".to_owned()),
            ),
            (
                "while paused, a match is deferred",
                file(Data, "a.txt", Modify),
                PAUSED,
                Route::Wake {
                    wakes: vec![wake(Ingest, "modify a.txt (rule \"memories\")")],
                    deferred: true,
                },
            ),
        ]);
    }

    #[test]
    fn state_changes_wake_only_when_the_part_that_matters_changed() {
        use EventKind::Modify;
        use Scope::State;
        let queue = || file(State, "task_queue.json", Modify);
        check(vec![
            (
                "a changed queue wakes retry",
                queue(),
                verdict(Verdict::Changed),
                wakes(vec![wake(
                    Action::Retry,
                    "modify task_queue.json (rule \"queue\")",
                )]),
            ),
            (
                "memsched's own write to a state file is ignored",
                queue(),
                verdict(Verdict::OwnWrite),
                Route::Ignored("task_queue.json: memsched's own write".to_owned()),
            ),
            (
                "a state file whose part that matters is unchanged is ignored",
                queue(),
                verdict(Verdict::Unchanged("its failed tasks")),
                Route::Ignored("task_queue.json: its failed tasks did not change".to_owned()),
            ),
            (
                "a half-written state file waits for its writer",
                queue(),
                verdict(Verdict::Unreadable("EOF".to_owned())),
                Route::Ignored(
                    "task_queue.json: does not parse yet (EOF); waiting for its writer's next event"
                        .to_owned(),
                ),
            ),
            (
                "a state file no rule names is ignored before it is judged",
                file(State, "upload_log.json", Modify),
                Facts::default(),
                Route::Ignored("modify upload_log.json: no rule matches".to_owned()),
            ),
        ]);
    }

    #[test]
    fn the_pause_marker_the_rules_the_canary_and_lost_events_are_named_decisions() {
        let marker = Facts {
            pause_marker: true,
            ..Facts::default()
        };
        check(vec![
            (
                "the marker appearing pauses, and says so",
                Change::Pause,
                marker,
                Route::Pause { paused: true },
            ),
            (
                "the marker touched while paused changes nothing",
                Change::Pause,
                Facts {
                    pause_marker: true,
                    ..PAUSED
                },
                Route::Pause { paused: true },
            ),
            (
                "the marker gone resumes",
                Change::Pause,
                PAUSED,
                Route::Pause { paused: false },
            ),
            (
                "lost events rescan everything",
                Change::Rescan,
                Facts::default(),
                Route::Rescan,
            ),
            (
                "the rules file reloads",
                Change::Rules,
                Facts::default(),
                Route::Rules,
            ),
            (
                "the canary is the canary's",
                Change::Canary,
                Facts::default(),
                Route::Canary,
            ),
        ]);
    }

    #[test]
    fn the_loop_is_asked_only_for_the_facts_a_route_reads() {
        use EventKind::{Create, Modify, Rename};
        use Scope::{Data, State};
        let path = |rel: &str| Some(PathBuf::from("/p").join(rel));
        let cases = [
            (
                file(Data, "inbox", Create),
                Needs {
                    is_dir: path("inbox"),
                    ..Needs::default()
                },
            ),
            (
                file(Data, "inbox", Rename),
                Needs {
                    is_dir: path("inbox"),
                    ..Needs::default()
                },
            ),
            (file(Data, "a.txt", Modify), Needs::default()),
            (
                file(State, "task_queue.json", Modify),
                Needs {
                    verdict: path("task_queue.json"),
                    ..Needs::default()
                },
            ),
            (file(State, "upload_log.json", Modify), Needs::default()),
            (
                Change::Pause,
                Needs {
                    pause_marker: true,
                    ..Needs::default()
                },
            ),
            (Change::Rescan, Needs::default()),
        ];
        let rules = rules();
        for (change, want) in cases {
            assert_eq!(needs(&change, &rules), want, "{change:?}");
        }
    }
}
