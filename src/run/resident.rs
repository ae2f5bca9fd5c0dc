//! Resident steps (issue 19): a step started once, when its first batch is due, and kept;
//! each batch is one JSON line on its stdin and one answer line on its stdout. The
//! promises of one-shot steps hold: a timeout ends its process group and the next batch
//! starts a fresh one; a step that dies fails its batch and is started again (after a
//! pause when it keeps dying); it holds its action's lock for its whole life, and this
//! process holds that lock as long as any resident step of it lives ([`lease`]), so no
//! second copy starts here or in another memsched; it exits on EOF of its stdin, which a
//! killed memsched gives it too. What lives here lives as long as the process: `--once`
//! and the watcher close them ([`stop_all`]) as they end, the watcher also on a reload
//! ([`close_all_soon`]).

mod process;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use crossbeam_channel::{after, select};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::os::lock::Guard;
use crate::run::runner::registry;
use crate::run::runner::{CommandReport, shown_argv};
use process::{Line, Process};
pub(crate) use process::{Spec, request_line};

/// The longest pause before starting a step that keeps dying.
const MAX_RESTART_PAUSE: Duration = Duration::from_secs(10);

/// What became of one batch.
#[derive(Debug)]
pub(crate) enum Answer {
    /// The step's answer line for this batch.
    Line(Vec<u8>),
    /// A line that is not this batch's answer (why): the step was ended, so the next
    /// batch starts in step again.
    Wrong(String),
    /// No answer: the step timed out, died or was interrupted (why).
    None(String),
}

/// One batch served: the record for the log, and the answer.
#[derive(Debug)]
pub(crate) struct Served {
    pub report: CommandReport,
    pub answer: Answer,
}

/// A resident step's place: its process while it lives, and how often it died in a row.
#[derive(Default)]
struct Slot {
    process: Option<Process>,
    /// The pid of the process out serving a batch (not in `process` meanwhile).
    in_flight: Option<u32>,
    deaths: u32,
}

type Key = (PathBuf, Vec<OsString>);

#[derive(Default)]
struct State {
    slots: HashMap<Key, Slot>,
    /// Action locks held for resident steps, by path.
    guards: HashMap<PathBuf, Guard>,
    /// Locks a run is using now (see [`Lease`]).
    leased: HashSet<PathBuf>,
    /// Bumped by [`stop_all`] and [`retire_all`]: a step out serving a batch from before
    /// is closed when it comes back.
    generation: u64,
    /// Steps being closed outside the mutex, counted by lock: their lock is kept, and no
    /// step of it starts, until they have exited (see [`Closing`]).
    closing: HashMap<PathBuf, usize>,
}

impl State {
    /// Drops the lock at `lock` when no run uses it and no step of it lives.
    fn release_if_unused(&mut self, lock: &Path) {
        let lives = self
            .slots
            .iter()
            .any(|((l, _), s)| l == lock && (s.process.is_some() || s.in_flight.is_some()));
        if !lives && !self.leased.contains(lock) && !self.closing.contains_key(lock) {
            self.guards.remove(lock);
        }
    }
}

/// The registry, and the signal that a [`Closing`] is done.
fn registry() -> &'static (Mutex<State>, Condvar) {
    static REGISTRY: OnceLock<(Mutex<State>, Condvar)> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

fn state() -> MutexGuard<'static, State> {
    registry().0.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Waits, the mutex let go meanwhile, until no step of `lock` (of any lock when `None`)
/// is being closed.
fn wait_closed(
    mut state: MutexGuard<'static, State>,
    lock: Option<&Path>,
) -> MutexGuard<'static, State> {
    let busy = |s: &State| lock.map_or(!s.closing.is_empty(), |l| s.closing.contains_key(l));
    while busy(&state) {
        state = registry()
            .1
            .wait(state)
            .unwrap_or_else(PoisonError::into_inner);
    }
    state
}

/// Steps taken out of the registry to be closed without holding its mutex (each close
/// may wait [`process::EXIT_GRACE`] for a step that ignores EOF): meanwhile their locks
/// stay held and no step of them starts, so two copies never run at once, but a run
/// that needs the registry for anything else goes on.
#[must_use]
struct Closing(Vec<(PathBuf, Process)>);

impl Closing {
    /// Counts `processes` (each with its lock) as closing in `state`.
    fn take(state: &mut State, processes: Vec<(PathBuf, Process)>) -> Closing {
        for (lock, _) in &processes {
            *state.closing.entry(lock.clone()).or_default() += 1;
        }
        Closing(processes)
    }

    /// Closes them (call without the mutex held), then frees the locks nothing else uses.
    fn close(self) {
        let locks: Vec<PathBuf> = self
            .0
            .into_iter()
            .map(|(lock, process)| {
                process.close();
                lock
            })
            .collect();
        let mut state = state();
        for lock in &locks {
            if let Some(count) = state.closing.get_mut(lock) {
                *count -= 1;
                if *count == 0 {
                    state.closing.remove(lock);
                }
            }
            state.release_if_unused(lock);
        }
        registry().1.notify_all();
    }
}

/// A run's use of an action lock its resident steps hold: while it lives the lock is
/// this run's; once it ends the lock stays only as long as a resident step lives.
#[derive(Debug)]
pub(crate) struct Lease {
    lock: PathBuf,
}

/// Takes the lock at `lock` for a run whose action has resident steps: the one a living
/// step of this process already holds, else a fresh one from `acquire`. `keep` lists the
/// argument vectors of the steps the run may use: any other step of that lock (from
/// rules since changed) is closed first, so two versions of a step never live at once.
pub(crate) fn lease(
    lock: &Path,
    keep: &[Vec<OsString>],
    acquire: impl FnOnce() -> Result<Guard>,
) -> Result<Lease> {
    let mut state = state();
    let superseded: Vec<Key> = state
        .slots
        .keys()
        .filter(|(path, argv)| path == lock && !keep.contains(argv))
        .cloned()
        .collect();
    for key in superseded {
        if let Some(process) = state.slots.remove(&key).and_then(|s| s.process) {
            process.close();
        }
    }
    if !state.guards.contains_key(lock) {
        let guard = acquire()?;
        state.guards.insert(lock.to_path_buf(), guard);
    }
    state.leased.insert(lock.to_path_buf());
    Ok(Lease {
        lock: lock.to_path_buf(),
    })
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut state = state();
        state.leased.remove(&self.lock);
        state.release_if_unused(&self.lock);
    }
}

/// Closes the resident steps holding `lock` and frees it, unless a run uses it: before
/// something else of this process takes that lock (retry re-running an ingest task), so
/// no one-shot step runs beside a resident one.
pub(crate) fn release(lock: &Path) {
    let mut state = state();
    if state.leased.contains(lock) {
        return;
    }
    let keys: Vec<Key> = state
        .slots
        .keys()
        .filter(|(l, _)| l == lock)
        .cloned()
        .collect();
    for key in keys {
        if let Some(process) = state.slots.get_mut(&key).and_then(|s| s.process.take()) {
            process.close();
        }
    }
    // One a reload took out may still be closing: the caller takes the lock next.
    let mut state = wait_closed(state, Some(lock));
    state.release_if_unused(lock);
}

/// Closes every resident step (EOF on its stdin, then waits for it to exit) and frees
/// their locks: as `--once` or the watcher ends. A step out serving a batch is closed
/// when its batch ends.
pub(crate) fn stop_all() {
    retire_all().close();
    // Steps a reload took out may still be closing on their own thread.
    let mut state = wait_closed(state(), None);
    let locks: Vec<PathBuf> = state.guards.keys().cloned().collect();
    for lock in locks {
        state.release_if_unused(&lock);
    }
}

/// Closes every resident step on a thread of its own, as the watcher's rules change: the
/// caller (the event loop) does not wait, nor does a run that needs the registry; a step
/// of a lock being closed starts once the old one has exited.
pub(crate) fn close_all_soon() {
    let closing = retire_all();
    if !closing.0.is_empty() {
        std::thread::spawn(move || closing.close());
    }
}

/// Takes every idle resident step out to be closed, and makes those out serving a batch
/// be closed when they come back.
fn retire_all() -> Closing {
    let mut state = state();
    state.generation += 1;
    let processes: Vec<(PathBuf, Process)> = state
        .slots
        .iter_mut()
        .filter_map(|((lock, _), s)| s.process.take().map(|p| (lock.clone(), p)))
        .collect();
    Closing::take(&mut state, processes)
}

/// The next batch's id, unique in this process.
#[must_use]
pub(crate) fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Serves batch `id` (its request `line`, from [`request_line`]) with `spec`'s step,
/// starting it if none lives; `action` names it for people. Only a step that cannot
/// start is an error; what became of the batch is in [`Served`].
pub(crate) fn serve(
    spec: &Spec,
    action: &str,
    id: u64,
    line: Vec<u8>,
    timeout: Duration,
) -> Result<Served> {
    let key: Key = (spec.lock.clone(), spec.argv.clone());
    let (process, generation) = check_out(spec, &key)?;
    let _out = OutServing {
        key: &key,
        pid: process.pid,
    };
    let started = Instant::now();
    // A line written while no batch was in flight answers nothing: dropped, so it is
    // never taken for this batch's answer.
    while process.lines.try_recv().is_ok() {}
    let program = spec.argv[0].to_string_lossy().into_owned();
    let entry = registry::register(Some(action.to_owned()), None, &program, process.pid);
    let sent = process.send(line);
    let (mut timed_out, mut interrupted) = (false, false);
    let mut status = None;
    let answer = if sent {
        select! {
            recv(process.lines) -> line => match line {
                Ok(line) => read_answer(id, line),
                Err(_) => {
                    status = wait_exit(&process);
                    Answer::None(String::new())
                }
            },
            recv(process.exit) -> exit => {
                status = exit.ok().and_then(std::result::Result::ok);
                // It may have answered just before it exited.
                match process.lines.try_recv() {
                    Ok(line) => read_answer(id, line),
                    Err(_) => Answer::None(String::new()),
                }
            }
            recv(entry.abort()) -> _ => {
                interrupted = true;
                status = process.end();
                Answer::None(String::new())
            }
            recv(after(timeout)) -> _ => {
                timed_out = true;
                status = process.end();
                Answer::None(String::new())
            }
        }
    } else {
        status = wait_exit(&process);
        Answer::None(String::new())
    };
    drop(entry);
    let answered = matches!(answer, Answer::Line(_));
    let ended = status.is_some() || process.has_exited();
    if matches!(answer, Answer::Wrong(_)) {
        // Out of step with its batches: ended, so the next batch starts afresh.
        process.end();
    }
    let report = CommandReport {
        argv: shown_argv(&spec.argv),
        exit_code: if answered && !ended {
            Some(0)
        } else {
            status.and_then(|s| s.code())
        },
        signal: status.and_then(|s| std::os::unix::process::ExitStatusExt::signal(&s)),
        timed_out,
        interrupted,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        stdout_tail: Vec::new(),
        stderr_tail: process.take_stderr(),
    };
    let answer = match answer {
        Answer::None(_) if timed_out || interrupted => Answer::None(report.ending()),
        Answer::None(_) => Answer::None(format!(
            "the resident step ended before it answered batch {id} ({})",
            report.ending()
        )),
        other => other,
    };
    let died = !answered && !timed_out && !interrupted;
    let keep = answered && !ended;
    check_in(spec, &key, process, generation, keep, died);
    Ok(Served { report, answer })
}

/// Waits a moment for a step whose stdout closed to exit, then ends its group.
fn wait_exit(process: &Process) -> Option<std::process::ExitStatus> {
    match process.exit.recv_timeout(crate::run::runner::KILL_GRACE) {
        Ok(status) => status.ok(),
        Err(_) => process.end(),
    }
}

/// Whether `line` is batch `id`'s answer: a JSON object whose `id` is `id`.
fn read_answer(id: u64, line: Line) -> Answer {
    #[derive(Deserialize)]
    struct Tagged {
        id: Option<serde_json::Value>,
    }
    let Line::Text(line) = line else {
        return Answer::Wrong(format!(
            "answered batch {id} with a line longer than 64 MiB; nothing of this batch was recorded, it will be sent again"
        ));
    };
    let shown = || {
        let text = String::from_utf8_lossy(&line);
        let cut: String = text.chars().take(120).collect();
        cut
    };
    match serde_json::from_slice::<Tagged>(&line) {
        Ok(Tagged { id: Some(got) }) if got.as_u64() == Some(id) => Answer::Line(line),
        Ok(Tagged { id: got }) => Answer::Wrong(format!(
            "answered batch {id} with a line for id {}: {:?}; stdout is for answers alone, one JSON line per batch with its id (log on stderr); nothing of this batch was recorded, it will be sent again",
            got.map_or_else(|| "none".to_owned(), |v| v.to_string()),
            shown()
        )),
        Err(e) => Answer::Wrong(format!(
            "answered batch {id} with a line that is no JSON object ({}): {:?}; stdout is for answers alone, one JSON line per batch (log on stderr); nothing of this batch was recorded, it will be sent again",
            crate::error::json_message(&e),
            shown()
        )),
    }
}

/// The step of `key`, living, taken out for one batch: the one kept, else a fresh one
/// (after a pause when it has died twice or more in a row). Returns the generation it
/// was taken in.
fn check_out(spec: &Spec, key: &Key) -> Result<(Process, u64)> {
    let mut state = state();
    if !state.guards.contains_key(&spec.lock) {
        return Err(Error::Spawn {
            program: spec.argv[0].to_string_lossy().into_owned(),
            source: std::io::Error::other(format!(
                "memsched bug: a resident step was asked to start without {} held",
                spec.lock.display()
            )),
        });
    }
    let slot = state.slots.entry(key.clone()).or_default();
    // One that exited while idle (by itself) is started afresh below.
    if let Some(process) = slot.process.take()
        && !process.has_exited()
    {
        slot.in_flight = Some(process.pid);
        let generation = state.generation;
        return Ok((process, generation));
    }
    let deaths = slot.deaths;
    let pause = restart_pause(deaths);
    if !pause.is_zero() {
        drop(state);
        log::info!(
            "the resident step died {deaths} times in a row: starting it again in {} ms",
            pause.as_millis()
        );
        std::thread::sleep(pause);
        state = self::state();
    }
    // The step a reload took out must have exited before its successor starts.
    let mut state = wait_closed(state, Some(&spec.lock));
    let process = Process::start(spec)?;
    let pid = process.pid;
    let generation = state.generation;
    let slot = state.slots.entry(key.clone()).or_default();
    slot.in_flight = Some(pid);
    if let Some(idle) = spec.idle_exit {
        watch_idle(key.clone(), pid, idle);
    }
    Ok((process, generation))
}

/// How long to wait before starting a step that died `deaths` times in a row: nothing
/// after one death, then 0.5 s doubling up to [`MAX_RESTART_PAUSE`].
fn restart_pause(deaths: u32) -> Duration {
    if deaths < 2 {
        return Duration::ZERO;
    }
    let doublings = (deaths - 2).min(16);
    (Duration::from_millis(500) * 2u32.pow(doublings)).min(MAX_RESTART_PAUSE)
}

/// A step out serving a batch: should the batch never come back (a panic), its place is
/// cleared, so the lock is not held for a step that is gone.
struct OutServing<'a> {
    key: &'a Key,
    pid: u32,
}

impl Drop for OutServing<'_> {
    fn drop(&mut self) {
        let mut state = state();
        if let Some(slot) = state.slots.get_mut(self.key)
            && slot.in_flight == Some(self.pid)
        {
            slot.in_flight = None;
            state.release_if_unused(&self.key.0);
        }
    }
}

/// Puts a step back after its batch: kept when it answered and lives (and no
/// [`stop_all`] came meanwhile), else closed or gone; `died` counts towards the pause.
fn check_in(spec: &Spec, key: &Key, mut process: Process, generation: u64, keep: bool, died: bool) {
    let mut state = state();
    let current = state.generation;
    let slot = state.slots.entry(key.clone()).or_default();
    slot.in_flight = None;
    slot.deaths = if died { slot.deaths + 1 } else { 0 };
    let mut retired = None;
    if keep && generation == current {
        process.last_used = Instant::now();
        slot.process = Some(process);
    } else if keep {
        // A reload came while it served: closed, without the mutex held.
        retired = Some(Closing::take(
            &mut state,
            vec![(spec.lock.clone(), process)],
        ));
    }
    state.release_if_unused(&spec.lock);
    drop(state);
    if let Some(retired) = retired {
        retired.close();
    }
}

/// Closes the step `pid` of `key` once it has had no batch for `idle`, handing its
/// memory back; a run using its lock keeps it until the run ends.
fn watch_idle(key: Key, pid: u32, idle: Duration) {
    std::thread::spawn(move || {
        let mut wait = idle;
        loop {
            std::thread::sleep(wait);
            let mut state = state();
            let in_run = state.leased.contains(&key.0);
            let Some(slot) = state.slots.get_mut(&key) else {
                return;
            };
            let quiet = match &slot.process {
                Some(p) if p.pid == pid => p.last_used.elapsed(),
                _ if slot.in_flight == Some(pid) => {
                    wait = idle;
                    continue;
                }
                _ => return,
            };
            if quiet >= idle && !in_run {
                if let Some(process) = slot.process.take() {
                    log::info!(
                        "the resident step (pid {pid}) had no batch for {}: its stdin is closed",
                        humantime::format_duration(idle)
                    );
                    process.close();
                }
                state.release_if_unused(&key.0);
                return;
            }
            wait = idle.saturating_sub(quiet).max(Duration::from_millis(50));
        }
    });
}
