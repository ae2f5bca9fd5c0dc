//! One pass over the requested actions, in the seed's order: for each, take its lock, plan
//! from disk, execute, and report; then append the run to scheduler_log.json.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use crate::actions::ingest::{self, WatcherHints};
use crate::actions::{retry, upload, watchdog};
use crate::config::paths::Paths;
use crate::config::rules::{IngestConfig, RetryConfig, Rules, UploadConfig, WatchdogConfig};
use crate::error::{Error, Result, holder_text};
use crate::model::action::Action;
use crate::model::clock::{Clock, SystemClock};
use crate::model::trigger::Trigger;
use crate::os::lock;
use crate::run::context::Context;
use crate::run::report::{ActionReport, Outcome, RunRecord, count, exit_of};
use crate::run::resident;
use crate::run::runner::Judged;
use crate::state::{scheduler_log, timestamp};

/// What a run was asked to do.
#[derive(Debug, Clone)]
// Four independent switches: a dry run, progress shown, removals confirmed, upload behind
// ingest.
#[allow(clippy::struct_excessive_bools)]
pub struct Request {
    pub actions: Vec<Action>,
    /// Why the run happens: manual, cron, event, tick, startup.
    pub trigger: Trigger,
    pub dry_run: bool,
    pub progress: bool,
    /// What woke the watcher for this run (changes, rules matched, timers).
    pub woken_by: Vec<String>,
    /// Set by SIGINT or SIGTERM: the step that runs finishes, no other starts.
    pub stop: Arc<AtomicBool>,
    /// What the watcher hands the ingest action, and it alone: the paths it heard change,
    /// the files it heard closed, their early hashes, the manifest it holds.
    pub ingest_hints: WatcherHints,
    /// A person confirmed the removals this run finds (`--confirm-removals`).
    pub confirm_removals: bool,
    /// Upload is in the run only to follow ingest (issue 19): it runs if ingest ran a step
    /// (whose writes, the index, are upload sources), and is left out of the run otherwise.
    pub upload_behind_ingest: bool,
    /// Set as upload starts to plan: what changed before then, its plan has seen.
    pub upload_started: Arc<OnceLock<Instant>>,
}

impl Request {
    /// A run of `actions` for `trigger` as `--once` makes it: planned from a walk of
    /// data_dir, with nothing heard, nothing held, no stop asked. Callers set what differs.
    #[must_use]
    pub fn new(actions: Vec<Action>, trigger: Trigger) -> Request {
        Request {
            actions,
            trigger,
            dry_run: false,
            progress: false,
            woken_by: Vec::new(),
            stop: Arc::new(AtomicBool::new(false)),
            ingest_hints: WatcherHints::default(),
            confirm_removals: false,
            upload_behind_ingest: false,
            upload_started: Arc::new(OnceLock::new()),
        }
    }
}

/// Runs every requested action once. One action failing does not stop the others.
#[must_use]
pub fn run(paths: &Paths, rules: &Rules, request: &Request) -> RunRecord {
    run_with_clock(paths, rules, request, &SystemClock)
}

/// [`run`] with the wall clock injected.
#[must_use]
pub fn run_with_clock(
    paths: &Paths,
    rules: &Rules,
    request: &Request,
    clock: &dyn Clock,
) -> RunRecord {
    let started_at = clock.now();
    let began = Instant::now();
    // Verdicts on what the run starts hold for this run alone: the next judges afresh.
    let judged = Judged::default();
    let ctx = Context {
        paths,
        rules,
        now: started_at,
        clock,
        dry_run: request.dry_run,
        progress: request.progress,
        stop: &request.stop,
        trigger: request.trigger,
        judged: &judged,
    };
    if !request.dry_run {
        // A missing state folder is made here once; if that fails, the first lock or
        // write in it reports the path.
        let _ = std::fs::create_dir_all(&paths.state_dir);
        for dir in paths.state_folders() {
            crate::state::atomic::sweep_stale(&dir);
        }
    }
    let mut actions: Vec<ActionReport> = Vec::new();
    let mut left_out = None;
    for action in Action::ALL
        .into_iter()
        .filter(|a| request.actions.contains(a))
    {
        let began = Instant::now();
        if action == Action::Upload && request.upload_behind_ingest && !ingest_ran_a_step(&actions)
        {
            left_out = Some(action);
            continue;
        }
        if ctx.stopping() {
            actions.push(ActionReport::new(
                action,
                Outcome::Skipped,
                "not started: a signal asked memsched to stop",
            ));
            continue;
        }
        if action == Action::Upload {
            let _ = request.upload_started.set(began);
        }
        let mut report = run_guarded(&ctx, request, action, &actions);
        if action == Action::Upload && request.upload_behind_ingest {
            report.reasons.insert(
                0,
                "right behind ingest, which ran its step: what it wrote goes up in this run"
                    .to_owned(),
            );
        }
        report.duration_ms = millis(began);
        log::debug!("{action}: {}: {}", report.outcome.label(), report.summary);
        actions.push(report);
    }
    RunRecord {
        seq: None,
        started_at: timestamp(started_at),
        finished_at: timestamp(clock.now()),
        duration_ms: millis(began),
        trigger: request.trigger,
        modes: request
            .actions
            .iter()
            .filter(|a| Some(**a) != left_out)
            .map(|a| a.name().to_owned())
            .collect(),
        dry_run: request.dry_run,
        woken_by: request.woken_by.clone(),
        pid: std::process::id(),
        exit_code: exit_of(&actions).code(),
        actions,
    }
}

/// Whether ingest, earlier in this run, ran its step (a batch, or the removal step): only
/// then may it have written the index, an upload source.
fn ingest_ran_a_step(earlier: &[ActionReport]) -> bool {
    earlier.iter().any(|a| {
        a.action == Action::Ingest
            && a.count_of(&[count::BATCHES, count::REMOVALS_DONE, count::REMOVALS_FAILED]) > 0
    })
}

/// Appends the run to scheduler_log.json (never for a dry run, which writes nothing).
pub fn record(paths: &Paths, rules: &Rules, run: &mut RunRecord) -> Result<()> {
    if run.dry_run {
        return Ok(());
    }
    scheduler_log::append(paths, run, rules.log_keep)
}

/// Runs `request`, marks the record interrupted when a signal asked it to stop, and
/// appends it to scheduler_log.json: what `--once` and the watcher both do with a run.
/// The record comes back whether or not it was logged; the caller says how to report a
/// log that failed.
pub fn run_and_record(paths: &Paths, rules: &Rules, request: &Request) -> (RunRecord, Result<()>) {
    let mut record = run(paths, rules, request);
    if request.stop.load(std::sync::atomic::Ordering::SeqCst) {
        record.mark_interrupted();
    }
    let logged = self::record(paths, rules, &mut record);
    (record, logged)
}

/// Runs one action; a panic in it (a bug) becomes that action's failure, so the run is
/// still recorded, the other actions still run, and a watcher's loop never waits for a run
/// that will not finish.
fn run_guarded(
    ctx: &Context<'_>,
    request: &Request,
    action: Action,
    earlier: &[ActionReport],
) -> ActionReport {
    let turn = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // Fault injection for the tests: `MEMSCHED_TEST_PANIC=retry` makes retry panic.
        assert!(
            std::env::var("MEMSCHED_TEST_PANIC")
                .ok()
                .is_none_or(|a| a != action.name()),
            "MEMSCHED_TEST_PANIC asked {action} to panic"
        );
        run_action(ctx, request, action, earlier)
    }));
    turn.unwrap_or_else(|payload| {
        let what = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("no message");
        let mut report = ActionReport::new(
            action,
            Outcome::Failed,
            format!("memsched bug: the {action} action panicked ({what}); the other actions ran"),
        );
        report.error = Some(report.summary.clone());
        report
    })
}

/// An action that is configured and available, with its configuration.
enum Job<'a> {
    Retry(&'a RetryConfig),
    Ingest(&'a IngestConfig),
    Upload(&'a UploadConfig),
    Watchdog(&'a WatchdogConfig),
}

fn run_action(
    ctx: &Context<'_>,
    request: &Request,
    action: Action,
    earlier: &[ActionReport],
) -> ActionReport {
    let rules = ctx.rules;
    let job = match action {
        Action::Retry => rules.retry.as_ref().map(Job::Retry),
        Action::Ingest => rules.ingest.as_ref().map(Job::Ingest),
        Action::Upload => rules.upload.as_ref().map(Job::Upload),
        Action::Watchdog => rules.watchdog.as_ref().map(Job::Watchdog),
    };
    let Some(job) = job else {
        let source = ctx
            .rules
            .file
            .as_ref()
            .map_or_else(|| "the rules".to_owned(), |f| f.display().to_string());
        return ActionReport::new(
            action,
            Outcome::Skipped,
            format!("not configured: no [actions.{action}] table in {source}"),
        );
    };
    // A dry run takes no lock: it writes nothing, not even a lock file.
    let guard = if ctx.dry_run {
        None
    } else {
        match hold(ctx, &job, action) {
            Ok(guard) => Some(guard),
            Err(Error::LockHeld { path, pid }) => {
                let mut report = ActionReport::new(
                    action,
                    Outcome::Skipped,
                    format!(
                        "{} holds {}: that run does this work",
                        holder_text(pid),
                        path.display()
                    ),
                );
                report.lock_held = true;
                report.lock_holder = pid;
                return report;
            }
            Err(e) => return ActionReport::new(action, Outcome::Failed, "").fail(&e),
        }
    };
    let mut report = match job {
        Job::Retry(config) => retry::perform(ctx, config),
        Job::Ingest(config) => {
            ingest::perform(ctx, config, &request.ingest_hints, request.confirm_removals)
        }
        Job::Upload(config) => upload::perform(ctx, config, request.confirm_removals),
        Job::Watchdog(config) => watchdog::perform(ctx, config, earlier),
    };
    // A lock file a leftover helper held was set aside: the record keeps why.
    if let Some(note) = guard.as_ref().and_then(Hold::set_aside) {
        report.reasons.insert(0, note.to_owned());
    }
    report
}

/// An action's lock as a run holds it: its own, or (for ingest with a resident step) a
/// lease on the one its resident steps keep between runs.
enum Hold {
    Lock { guard: lock::Guard },
    Resident { _lease: resident::Lease },
}

impl Hold {
    /// The sentence saying which leftover helper's lock file was set aside to take the
    /// lock (a resident step's lease keeps its lock between runs: it sets nothing aside).
    fn set_aside(&self) -> Option<&str> {
        match self {
            Hold::Lock { guard } => guard.set_aside(),
            Hold::Resident { .. } => None,
        }
    }
}

/// Takes `action`'s lock for this run, without waiting.
fn hold(ctx: &Context<'_>, job: &Job<'_>, action: Action) -> Result<Hold> {
    let path = ctx.paths.action_lock(action.name());
    match job {
        Job::Ingest(config) if config.resident.is_some() => {
            let keep = ingest::resident_argvs(config);
            resident::lease(&path, &keep, || lock::try_acquire(&path))
                .map(|lease| Hold::Resident { _lease: lease })
        }
        _ => lock::try_acquire(&path).map(|guard| Hold::Lock { guard }),
    }
}

fn millis(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}
