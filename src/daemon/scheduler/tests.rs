//! The scheduler's decisions over an injected clock: inputs and instants in, run orders out.

use super::*;

const MS: Duration = Duration::from_millis(1);

fn settings() -> Settings {
    Settings::from_rules(400 * MS, 10_000 * MS, 900_000 * MS)
}

fn started(t0: Instant) -> Scheduler {
    let mut s = Scheduler::new(settings(), Action::ALL.to_vec(), t0);
    let first = s.poll(t0).expect("startup runs at once");
    assert_eq!(first.trigger, Trigger::Startup);
    assert_eq!(first.actions, Action::ALL);
    s.run_finished();
    s
}

#[test]
fn a_storm_becomes_one_run_after_the_quiet_window() {
    let t0 = Instant::now();
    let mut s = started(t0);
    for i in 0..50u32 {
        let t = t0 + MS * (i * 50);
        s.event(Action::Ingest, format!("create f{i}.txt"), t);
        assert_eq!(s.poll(t), None, "still inside the storm at {i}");
    }
    let last = t0 + MS * (49 * 50);
    assert_eq!(
        s.next_wake(),
        last + 400 * MS,
        "the trailing edge: debounce after the last"
    );
    assert_eq!(s.poll(last + 399 * MS), None);
    let run = s.poll(last + 400 * MS).unwrap();
    assert_eq!(run.actions, [Action::Ingest]);
    assert_eq!(run.trigger, Trigger::Event);
    assert_eq!(run.reasons.len(), REASONS_KEPT + 1);
}

#[test]
fn max_wait_bounds_the_delay_of_changes_that_never_pause() {
    let t0 = Instant::now();
    let mut s = started(t0);
    let mut t = t0;
    let run = loop {
        s.event(Action::Ingest, "modify log.txt".into(), t);
        if let Some(run) = s.poll(t) {
            break run;
        }
        t += 50 * MS;
    };
    assert_eq!(run.actions, [Action::Ingest]);
    assert_eq!(t, t0 + 10_000 * MS);
}

#[test]
fn a_trigger_during_a_run_runs_once_more_afterwards() {
    let t0 = Instant::now();
    let mut s = started(t0);
    s.event(Action::Ingest, "a".into(), t0);
    let run = s.poll(t0 + 400 * MS).unwrap();
    assert_eq!(run.actions, [Action::Ingest]);
    s.event(Action::Ingest, "b".into(), t0 + 450 * MS);
    s.event(Action::Ingest, "c".into(), t0 + 460 * MS);
    assert_eq!(s.poll(t0 + 5_000 * MS), None, "one run at a time");
    s.run_finished();
    let again = s.poll(t0 + 5_000 * MS).unwrap();
    assert_eq!(again.reasons, ["b", "c"]);
    s.run_finished();
    assert_eq!(s.poll(t0 + 6_000 * MS), None, "and only once");
}

#[test]
fn timers_wake_the_loop_exactly_when_work_falls_due() {
    let t0 = Instant::now();
    let mut s = started(t0);
    s.set_timer(Action::Retry, Some(t0 + 30_000 * MS));
    assert_eq!(s.next_wake(), t0 + 30_000 * MS);
    assert_eq!(s.poll(t0 + 29_999 * MS), None);
    let run = s.poll(t0 + 30_000 * MS).unwrap();
    assert_eq!(
        (run.actions.as_slice(), run.trigger),
        ([Action::Retry].as_slice(), Trigger::Timer)
    );
}

#[test]
fn the_tick_reconciles_everything_and_asks_for_a_canary() {
    let t0 = Instant::now();
    let mut s = started(t0);
    assert_eq!(s.next_wake(), t0 + 900_000 * MS);
    let run = s.poll(t0 + 900_000 * MS).unwrap();
    assert_eq!((run.actions.len(), run.trigger), (4, Trigger::Tick));
    assert!(s.take_canary_request());
    assert!(!s.take_canary_request());
    let t1 = t0 + 900_001 * MS;
    s.canary_written(t1);
    assert!(!s.canary_missed(t1 + 9_999 * MS));
    assert!(s.canary_missed(t1 + 10_000 * MS));
    s.canary_written(t1);
    assert!(s.canary_seen());
    assert!(!s.canary_seen());
}

#[test]
fn a_pause_defers_triggers_and_its_end_reconciles_once() {
    let t0 = Instant::now();
    let mut s = started(t0);
    s.set_paused(true, t0);
    s.event(Action::Ingest, "a".into(), t0);
    assert_eq!(s.poll(t0 + 60_000 * MS), None);
    s.set_paused(false, t0 + 60_000 * MS);
    let run = s.poll(t0 + 60_000 * MS).unwrap();
    assert_eq!((run.actions.len(), run.trigger), (4, Trigger::Resume));
    assert!(run.reasons.contains(&"a".to_owned()));
}

#[test]
fn a_rules_edit_is_reloaded_once_its_events_are_quiet() {
    let t0 = Instant::now();
    let mut s = started(t0);
    s.rules_changed(t0);
    s.rules_changed(t0 + 100 * MS);
    assert_eq!(s.next_wake(), t0 + 500 * MS);
    assert!(!s.take_reload(t0 + 499 * MS), "the writer may not be done");
    assert!(s.take_reload(t0 + 500 * MS));
    assert!(!s.take_reload(t0 + 600 * MS), "once");
}

#[test]
fn repeated_rescans_back_off() {
    let t0 = Instant::now();
    let mut s = started(t0);
    s.rescan("overflow", t0);
    s.rescan("overflow again, before the rescan ran", t0 + 100 * MS);
    assert_eq!(
        s.poll(t0 + 499 * MS),
        None,
        "waits for the losses to be quiet"
    );
    let run = s.poll(t0 + 500 * MS).unwrap();
    assert_eq!(run.trigger, Trigger::Rescan);
    s.run_finished();
    s.rescan("overflow", t0 + 1_000 * MS);
    assert_eq!(s.poll(t0 + 1_999 * MS), None);
    assert!(s.poll(t0 + 2_000 * MS).is_some());
    s.run_finished();
    s.rescan("overflow", t0 + 3_000 * MS);
    assert_eq!(s.poll(t0 + 4_999 * MS), None);
    assert!(s.poll(t0 + 5_000 * MS).is_some());
}

#[test]
fn actions_outside_the_mode_never_run_and_stop_lets_the_run_finish() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(settings(), vec![Action::Ingest], t0);
    assert_eq!(s.poll(t0).unwrap().actions, [Action::Ingest]);
    s.event(Action::Upload, "x".into(), t0);
    s.set_timer(Action::Retry, Some(t0));
    s.stop();
    assert!(!s.is_done(), "the run in progress finishes first");
    s.run_finished();
    assert!(s.is_done());
    assert_eq!(s.poll(t0 + 60_000 * MS), None);
}

#[test]
fn changes_heard_before_a_run_planned_are_absorbed_by_it_and_later_ones_are_not() {
    let t0 = Instant::now();
    let mut s = started(t0);
    let planned = t0 + MS * 1000;
    // The index ingest wrote, heard while the run was under way, before upload planned.
    s.event(
        Action::Upload,
        "rename index/a.json".to_owned(),
        t0 + MS * 995,
    );
    assert!(s.absorb(Action::Upload, planned), "seen by the run");
    assert_eq!(s.poll(planned + MS * 10_000), None);
    // One heard after upload planned may be a change the run did not see: it stays.
    s.event(
        Action::Upload,
        "rename index/a.json".to_owned(),
        planned + MS * 5,
    );
    assert!(!s.absorb(Action::Upload, planned));
    let order = s.poll(planned + MS * 10_000).expect("its own run");
    assert_eq!(order.actions, [Action::Upload]);
    s.run_finished();
    // Work a timer asked for while a run was under way is no change the run saw.
    let t1 = planned + MS * 20_000;
    s.event(Action::Ingest, "create a.txt".to_owned(), t1);
    assert!(s.poll(t1 + MS * 400).is_some(), "ingest's run starts");
    s.set_timer(Action::Upload, Some(t1 + MS * 500));
    assert_eq!(s.poll(t1 + MS * 500), None, "one run at a time");
    assert!(!s.absorb(Action::Upload, t1 + MS * 600));
}
