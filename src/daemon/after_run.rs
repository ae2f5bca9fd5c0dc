//! What the loop does once a run is back: which timer each action keeps, which skipped
//! action needs a thread waiting for the lock another process holds, when retry is due
//! for the files ingest failed on, whether the next ingest walks all of data_dir,
//! and what a tick found that no event announced. Pure, like [`routing`](super::routing):
//! the run's record and what the run carried in, an [`AfterRun`] out; the loop carries it
//! out.

use std::time::{Instant, SystemTime};

use crate::model::action::Action;
use crate::model::trigger::Trigger;
use crate::run::report::{Outcome, RunRecord, count};

/// What a run carries from the order that started it, through its thread, back to the loop
/// beside its record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Carried {
    /// The actions of the run that a heard change asked for.
    pub(super) heard: Vec<Action>,
    /// Ingest planned from the changed paths alone: what it says falls due covers only
    /// those, so it may not clear a timer an earlier run set.
    pub(super) partial_ingest: bool,
    /// When upload started to plan in the run, if it did: changes heard before then (the
    /// index ingest wrote in the same run) need no upload run of their own.
    pub(super) upload_started: Option<Instant>,
}

/// What becomes of an action's timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Timer {
    /// The run saw all the action's work: it is due then again, or (`None`) only when
    /// something wakes it.
    Replace(Option<SystemTime>),
    /// The run saw part of the work: the timer an earlier run set stays, unless this is
    /// sooner.
    NoLaterThan(SystemTime),
    /// The run saw part of the work and found nothing due: the timer stays as it is.
    Keep,
}

/// What the loop does after a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct AfterRun {
    /// Each action's timer, in the order the run reported them.
    pub(super) timers: Vec<(Action, Timer)>,
    /// Actions skipped because another process (a `--once`) held their lock, planned
    /// before the changes that woke this run: wait for the lock, then run them again.
    pub(super) await_lock: Vec<Action>,
    /// Ingest did not get through its plan: what it was given may be unrecorded, so its
    /// next run walks all of data_dir.
    pub(super) walk_all_next: bool,
    /// Files ingest failed on are now failed tasks, due after their backoff: retry takes
    /// them then, not at the next tick (and not at once, which would spend an attempt of a
    /// file that fails for good; issue 19 item 4).
    pub(super) retry_at: Option<SystemTime>,
    /// A task died in this run and no watchdog ran after it: the health (watchdog_state.json,
    /// the notification) is refreshed now, not at the next tick.
    pub(super) watchdog_now: bool,
    /// On a tick's run: how many items it found that no event announced.
    pub(super) unannounced: Option<u64>,
}

/// What to do after the run `record`, started with `carried`.
#[must_use]
pub(super) fn decide(record: &RunRecord, carried: &Carried) -> AfterRun {
    let mut after = AfterRun::default();
    let mut unannounced = 0;
    for a in &record.actions {
        let due = a.followup.next_due;
        let timer = if a.action != Action::Ingest || !carried.partial_ingest {
            Timer::Replace(due)
        } else {
            // An event run saw only its paths: a file an earlier run left to settle still
            // needs the timer that run set.
            due.map_or(Timer::Keep, Timer::NoLaterThan)
        };
        after.timers.push((a.action, timer));
        // What an action a change asked for finds, that change announced.
        if !carried.heard.contains(&a.action) {
            unannounced += a.followup.found;
        }
        if a.lock_held {
            after.await_lock.push(a.action);
        }
        let finished = matches!(a.outcome, Outcome::Ran | Outcome::NothingToDo);
        if a.action == Action::Ingest {
            after.walk_all_next |= !finished;
            after.retry_at = after.retry_at.into_iter().chain(a.followup.retry_due).min();
        }
    }
    // A task dies when retry runs it out of attempts, or finds it so and marks it dead.
    let died = !record.dry_run
        && record.actions.iter().any(|a| {
            let ran = matches!(a.outcome, Outcome::Ran | Outcome::Failed);
            a.count_of(&[count::DEAD]) > 0 || (ran && a.count_of(&[count::EXHAUSTED]) > 0)
        });
    let watchdog_ran = record
        .actions
        .iter()
        .any(|a| a.action == Action::Watchdog && a.outcome == Outcome::Ran);
    after.watchdog_now = died && !watchdog_ran;
    after.unannounced = (record.trigger == Trigger::Tick).then_some(unannounced);
    after
}

#[cfg(test)]
mod tests {
    //! A record and what the run carried in, the decision out: no scheduler, no threads.
    use super::*;
    use crate::run::report::{ActionReport, FailedItem};
    use pretty_assertions::assert_eq;
    use std::time::Duration;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn report(action: Action, outcome: Outcome) -> ActionReport {
        ActionReport::new(action, outcome, "")
    }

    fn due(action: Action, next_due: Option<SystemTime>) -> ActionReport {
        let mut report = report(action, Outcome::Ran);
        report.followup.next_due = next_due;
        report
    }

    fn record(trigger: Trigger, actions: Vec<ActionReport>) -> RunRecord {
        RunRecord {
            seq: None,
            started_at: String::new(),
            finished_at: String::new(),
            duration_ms: 0,
            trigger,
            modes: Vec::new(),
            dry_run: false,
            woken_by: Vec::new(),
            pid: 1,
            exit_code: 0,
            actions,
        }
    }

    fn carried(heard: &[Action], partial_ingest: bool) -> Carried {
        Carried {
            heard: heard.to_vec(),
            partial_ingest,
            upload_started: None,
        }
    }

    #[test]
    fn a_run_that_saw_all_the_work_replaces_the_timer_and_a_partial_ingest_keeps_it() {
        let cases = [
            (
                "an action due again sets its timer",
                due(Action::Retry, Some(at(5))),
                false,
                Timer::Replace(Some(at(5))),
            ),
            (
                "an action with nothing due clears its timer",
                due(Action::Retry, None),
                false,
                Timer::Replace(None),
            ),
            (
                "an ingest that walked everything clears its timer",
                due(Action::Ingest, None),
                false,
                Timer::Replace(None),
            ),
            (
                "an ingest of changed paths alone keeps the earlier timer, or a sooner one",
                due(Action::Ingest, Some(at(5))),
                true,
                Timer::NoLaterThan(at(5)),
            ),
            (
                "an ingest of changed paths alone with nothing due keeps the earlier timer",
                due(Action::Ingest, None),
                true,
                Timer::Keep,
            ),
            (
                "a partial ingest says nothing of another action's timer",
                due(Action::Upload, None),
                true,
                Timer::Replace(None),
            ),
        ];
        for (case, report, partial, timer) in cases {
            let action = report.action;
            let after = decide(
                &record(Trigger::Event, vec![report]),
                &carried(&[action], partial),
            );
            assert_eq!(after.timers, [(action, timer)], "{case}");
        }
    }

    #[test]
    fn a_task_dying_wakes_the_watchdog_unless_one_ran_after_it() {
        let died = || {
            let mut retry = report(Action::Retry, Outcome::Failed);
            retry.counts.insert(count::DEAD.into(), 1.into());
            retry
        };
        let exhausted = || {
            let mut retry = report(Action::Retry, Outcome::Ran);
            retry.counts.insert(count::EXHAUSTED.into(), 1.into());
            retry
        };
        // (case, actions, watchdog_now)
        let cases = [
            ("a task died", vec![died()], true),
            (
                "a task found out of attempts was marked dead",
                vec![exhausted()],
                true,
            ),
            (
                "no task died",
                vec![report(Action::Retry, Outcome::Failed)],
                false,
            ),
            (
                "the watchdog ran after it",
                vec![died(), report(Action::Watchdog, Outcome::Ran)],
                false,
            ),
        ];
        for (case, actions, watchdog_now) in cases {
            let after = decide(&record(Trigger::Timer, actions), &Carried::default());
            assert_eq!(after.watchdog_now, watchdog_now, "{case}");
        }
    }

    #[test]
    fn ingest_that_did_not_finish_walks_all_next_and_its_failed_files_wake_retry_when_due() {
        let failed = |mut report: ActionReport| {
            report.failed_items.push(FailedItem {
                item: "a.txt".to_owned(),
                error: "exit 1".to_owned(),
            });
            report.followup.retry_due = Some(at(30));
            report
        };
        // (case, report, walk_all_next, retry at)
        let cases = [
            (
                "ingest ran",
                report(Action::Ingest, Outcome::Ran),
                false,
                None,
            ),
            (
                "ingest had nothing to do",
                report(Action::Ingest, Outcome::NothingToDo),
                false,
                None,
            ),
            (
                "ingest failed outright",
                report(Action::Ingest, Outcome::Failed),
                true,
                None,
            ),
            (
                "ingest was skipped",
                report(Action::Ingest, Outcome::Skipped),
                true,
                None,
            ),
            (
                "ingest was interrupted",
                report(Action::Ingest, Outcome::Interrupted),
                true,
                None,
            ),
            (
                "ingest ran and queued failed files",
                failed(report(Action::Ingest, Outcome::Ran)),
                false,
                Some(at(30)),
            ),
            (
                "ingest failed on files",
                failed(report(Action::Ingest, Outcome::Failed)),
                true,
                Some(at(30)),
            ),
            (
                "another action failing walks nothing",
                report(Action::Upload, Outcome::Failed),
                false,
                None,
            ),
            (
                "retry's own failed items do not wake retry",
                failed(report(Action::Retry, Outcome::Failed)),
                false,
                None,
            ),
        ];
        for (case, report, walk_all_next, retry_at) in cases {
            let after = decide(&record(Trigger::Event, vec![report]), &Carried::default());
            assert_eq!(
                (after.walk_all_next, after.retry_at),
                (walk_all_next, retry_at),
                "{case}"
            );
        }
    }

    #[test]
    fn an_action_skipped_for_a_held_lock_waits_for_it_and_others_do_not() {
        let mut held = report(Action::Upload, Outcome::Skipped);
        held.lock_held = true;
        held.lock_holder = Some(42);
        let not_configured = report(Action::Retry, Outcome::Skipped);
        let after = decide(
            &record(
                Trigger::Event,
                vec![not_configured, held, report(Action::Ingest, Outcome::Ran)],
            ),
            &Carried::default(),
        );
        assert_eq!(after.await_lock, [Action::Upload]);
    }

    #[test]
    fn a_tick_counts_what_no_change_asked_for_and_other_runs_count_nothing() {
        let found = |action: Action, items: u64| {
            let mut report = report(action, Outcome::Ran);
            report.followup.found = items;
            report
        };
        let runs = || vec![found(Action::Retry, 2), found(Action::Ingest, 3)];
        // (case, trigger, heard, unannounced)
        let cases = [
            ("a tick nothing asked for", Trigger::Tick, &[][..], Some(5)),
            (
                "a tick where a change asked for ingest",
                Trigger::Tick,
                &[Action::Ingest][..],
                Some(2),
            ),
            (
                "a tick where changes asked for both",
                Trigger::Tick,
                &[Action::Retry, Action::Ingest][..],
                Some(0),
            ),
            ("an event run", Trigger::Event, &[][..], None),
            ("a rescan", Trigger::Rescan, &[][..], None),
        ];
        for (case, trigger, heard, unannounced) in cases {
            let after = decide(&record(trigger, runs()), &carried(heard, false));
            assert_eq!(after.unannounced, unannounced, "{case}");
        }
    }
}
