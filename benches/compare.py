#!/usr/bin/env python3
"""Side by side: memsched's watcher and watchexec on the same writes, in one run, one table.

Every tool runs the same step, `sh stamp.sh`, a shell script that appends the time it
started (`date +%s%N`) and the paths it was given to a log: memsched passes them as
arguments (`{files}`), watchexec in its events file (`--emit-events-to=file`). So each
tool pays the same process start, and the log says which run carried which path. A
latency is the step's stamp minus the time the benchmark closed the file it wrote; every
file written has content no other file has.

Each memsched runs on a pipeline home of its own (paths.json `{}`, so the home is also the
state folder it watches) with these rules, shown per section:

    debounce = "50ms"                      # not in the "shipped defaults" home
    [actions.ingest]
    command = ["sh", "<home>/stamp.sh", "{files}"]
    batch_size = 10000                     # one step run per memsched run in the storm
    settle = "0s"                          # only in the "settle 0s" home
    [[rules]]  in = "data", paths = ["**/*.txt"], run = ["ingest"]

watchexec runs `watchexec --debounce 50ms -w <Data> -e txt --postpone
--on-busy-update=queue --emit-events-to=file --shell=none -- sh <home>/stamp.sh`: it
watches the same kind of folder and queues changes that arrive while the step runs, as
memsched does.

Sections (`--skip` takes their names):

latency  One process per tool and configuration, all running at once; the samples are
         interleaved (one tool reacts at a time) so load from other work on the machine
         falls on every column alike. A sample writes a new file (Data/new/nI.txt), or
         rewrites one that existed and was recorded before the tool started
         (Data/rw/rI.txt, truncated and written again), waits for the step run that
         carries it, then pauses 0.2 s. Reported: p50 and p99 (nearest rank: with 40
         samples the p99 is the largest). Rows: debounce 50 ms with memsched's shipped
         `settle`; the same with `settle = "0s"`; memsched's shipped defaults (no
         debounce and no settle in its rules).
storm    One tool at a time: one process (this one) creates 10,000 files in Data/storm as
         fast as it can. Reported: step runs started after the first write, distinct
         paths the step saw (of 10,000), paths it saw in more than one run, and the time
         from the last write to the start of the last run that carried a storm path.
idle     All tools at once, after a first file has been reacted to and 3 s of quiet.
         memsched runs with RUST_LOG=memsched=debug and its stderr appended to
         <home>/memsched.err, inside the folder it watches, as a user would redirect it
         (watchexec's stderr goes to the same place in its home). Over the window:
         resident memory (VmRSS), wakeups per second (voluntary + involuntary context
         switches summed over /proc/PID/task/*/status), threads, and the lines the tool
         logged.
scale    100,000 files (20,000 with --quick) in 1,000 folders, shared by every tool, one
         tool at a time. From the moment the process is spawned, the benchmark writes a
         new probe file every 100 ms into Data/zz-probes (every 10 ms was tried: a stream
         that fast during its startup holds watchexec's first run back by ~10 s in a
         100,000-file tree, so it measured the stream, not the startup). "Ready to
         react" is the moment from which a write gets the tool's ordinary reaction:
         - watchexec: the write time of the earliest probe whose step started within
           debounce + 100 ms of it (probes before that are never seen, or late);
         - memsched: when its startup run finished (its record in scheduler_log.json).
           The probes cannot say it: the startup reconcile walks the Data folder after
           the watches are set up, so it finds every probe, even the first (the row
           "earliest probe reaching the step" shows that for both tools), and in the
           before binary a file written after startup waits for `settle` besides.
         Probing stops 0.3 s after the tool is ready; once no run has started for 1 s,
         VmRSS and VmHWM (the peak) are read. Then single writes, 0.5 s apart, give the
         write -> step start latency in a home that large. memsched is measured from
         empty state, then (after `memsched --once --mode ingest`, so everything is
         recorded) with the state recorded; watchexec has no state and is measured
         twice the same way.

The folders live on tmpfs (/dev/shm) when it exists, else under /tmp. Every child runs in
a session of its own and its process group is killed on exit, on error or on Ctrl-C.
Progress goes to stderr; the table (markdown) goes to stdout.

usage: benches/compare.py [--memsched LABEL=PATH]... [--watchexec PATH | --no-watchexec]
                          [--quick] [--skip SECTION[,SECTION]]... [--samples N] [--keep]
"""

from __future__ import annotations

import argparse
import atexit
import collections
import datetime
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECTIONS = ("latency", "storm", "idle", "scale")
DEBOUNCE_MS = 50
STORM_FILES = 10_000
SCALE_FOLDERS = 1_000
PROBE_EVERY_S = 0.100
PROMPT_MS = DEBOUNCE_MS + 100  # a reaction this soon after the write is the ordinary one
OLD = time.time() - 3600  # mtime given to files that must look long settled

# The step both tools run. `date` is forked for the stamp, the same cost for both.
STAMP = """#!/bin/sh
# Appends "T <ns at start>" then "P <path>" for each path given: as arguments
# (memsched) or in the events file watchexec names in WATCHEXEC_EVENTS_FILE.
t=$(date +%s%N)
{{
  printf 'T %s\\n' "$t"
  if [ $# -gt 0 ]; then printf 'P %s\\n' "$@"; fi
  if [ -n "$WATCHEXEC_EVENTS_FILE" ]; then
    sed -n 's/^[a-z_]*:\\(.*\\)$/P \\1/p' "$WATCHEXEC_EVENTS_FILE"
  fi
}} >> '{log}'
"""


def say(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class BenchError(Exception):
    """A failure that ends the run with a sentence instead of a traceback."""


# ---------------------------------------------------------------- processes

_LIVE = []


def spawn(argv, *, cwd, env=None, stderr=None):
    """Starts argv in a session of its own, so its whole process group can be killed."""
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=stderr or subprocess.DEVNULL,
                            stderr=stderr or subprocess.DEVNULL, start_new_session=True)
    _LIVE.append(proc)
    return proc


def stop(proc, grace=5.0):
    """SIGTERM to the group (memsched lets a running step finish), SIGKILL after grace."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        say(f"pid {proc.pid} did not exit after SIGKILL")
    if proc in _LIVE:
        _LIVE.remove(proc)


def stop_all():
    for proc in list(_LIVE):
        stop(proc, grace=2.0)


def on_signal(signum, _frame):
    raise SystemExit(128 + signum)


# ---------------------------------------------------------------- /proc

def proc_status(pid):
    """VmRSS and VmHWM in KiB, and threads."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.split()
    return {"rss_kib": int(fields["VmRSS"][0]), "hwm_kib": int(fields["VmHWM"][0]),
            "threads": int(fields["Threads"][0])}


def thread_switches(pid):
    """tid -> voluntary + involuntary context switches, for every thread of pid."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                out[tid] = sum(int(line.split()[1]) for line in f
                               if line.startswith(("voluntary_ctxt_switches",
                                                   "nonvoluntary_ctxt_switches")))
        except (FileNotFoundError, ProcessLookupError):
            continue  # the thread ended between listdir and open
    return out


class Wakeups:
    """Context switches of a process over a window, summed per thread: a thread that
    appears counts from zero, one that ends keeps what it had at the last sample
    (sample often, so short-lived threads are not missed)."""

    def __init__(self, pid):
        self.pid = pid
        self.first = thread_switches(pid)
        self.last = dict(self.first)

    def sample(self):
        for tid, n in thread_switches(self.pid).items():
            self.first.setdefault(tid, 0)
            self.last[tid] = n

    def total(self):
        return sum(self.last[t] - self.first[t] for t in self.last)


# ---------------------------------------------------------------- the step's log

class StampLog:
    """Reads the step's log as it grows: the start of every run and the paths each carried."""

    def __init__(self, path, from_end=False):
        self.path = path
        self.offset = os.path.getsize(path) if from_end and os.path.exists(path) else 0
        self.rest = b""
        self.runs = []                                 # start (ns) of each run, in order
        self.carried = collections.defaultdict(list)   # path -> starts of the runs carrying it
        self.current = set()
        self.quiet_from = 0.0  # epoch seconds: quiet is also counted from here (the last write)

    def poll(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except FileNotFoundError:
            return
        self.offset += len(chunk)
        lines = (self.rest + chunk).split(b"\n")
        self.rest = lines.pop()
        for line in lines:
            if line.startswith(b"T "):
                self.runs.append(int(line[2:]))
                self.current = set()
            elif line.startswith(b"P ") and self.runs:
                path = os.fsdecode(line[2:])
                if path not in self.current:  # watchexec lists a path once per event
                    self.current.add(path)
                    self.carried[path].append(self.runs[-1])

    def reaction(self, path, after_ns):
        """Start of the first run after after_ns that carried path, or None."""
        for start in self.carried.get(path, ()):
            if start > after_ns:
                return start
        return None

    def wait_reaction(self, path, after_ns, timeout_s):
        deadline = time.monotonic() + timeout_s
        while True:
            self.poll()
            start = self.reaction(path, after_ns)
            if start is not None or time.monotonic() > deadline:
                return start
            time.sleep(0.003)

    def wait_quiet(self, quiet_s, timeout_s, until=None, give_up_s=None):
        """Waits until no run has started for quiet_s and until() holds, or, when until()
        does not come true, until no run has started for give_up_s; True if until() held."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.poll()
            last = max(self.runs[-1] / 1e9 if self.runs else 0.0, self.quiet_from)
            quiet = time.time() - last
            done = until is None or until()
            if quiet >= quiet_s and done:
                return True
            if give_up_s is not None and quiet >= give_up_s:
                return False
            time.sleep(0.02)
        return False


def write_unique(path, tag):
    with open(path, "w") as f:
        f.write(f"{tag} {path} {time.time_ns()} {os.urandom(8).hex()}\n")
    return time.time_ns()


# ---------------------------------------------------------------- tools

class Instance:
    """One running tool on one home."""

    def __init__(self, tool, variant, home, data, proc, log):
        self.tool, self.variant, self.home, self.data = tool, variant, home, data
        self.proc, self.log = proc, log

    def alive(self):
        if self.proc.poll() is not None:
            raise BenchError(f"{self.tool.column} ({self.variant}) exited with status "
                             f"{self.proc.returncode}; its stderr is in {self.home}")

    def sample(self, path, tag, timeout_s=30.0, pause_s=0.2):
        """Writes path, waits for the run that carries it; the latency in ms, or None."""
        written = write_unique(path, tag)
        start = self.log.wait_reaction(path, written, timeout_s)
        self.alive()
        time.sleep(pause_s)
        return None if start is None else (start - written) / 1e6


    def warm_up(self, folder):
        """Writes files until one is reacted to: the tool has started and is watching."""
        for attempt in range(12):  # a watcher may not be watching yet when the first lands
            if self.sample(os.path.join(folder, f"warm-{attempt}.txt"), "warm-up",
                           timeout_s=5.0, pause_s=0.5) is not None:
                return
        raise BenchError(f"{self.tool.column} ({self.variant}) reacted to none of 12 files "
                         "written 5 s apart after it started")


def write_stamp(home):
    stamp, log = os.path.join(home, "stamp.sh"), os.path.join(home, "stamp.log")
    with open(stamp, "w") as f:
        f.write(STAMP.format(log=log))
    open(log, "a").close()
    return stamp, log


class Memsched:
    kind = "memsched"
    variants = ("main", "settle0", "defaults")

    def __init__(self, label, path):
        self.label, self.path = label, path
        self.column = f"memsched {label}"
        self.slug = f"memsched-{label}"

    def rules(self, stamp, variant):
        lines = [] if variant == "defaults" else [f'debounce = "{DEBOUNCE_MS}ms"']
        lines += ["[actions.ingest]", f'command = ["sh", {json.dumps(stamp)}, "{{files}}"]',
                  "batch_size = 10000"]
        if variant == "settle0":
            lines.append('settle = "0s"')
        lines += ["", "[[rules]]", 'name = "memories"', 'in = "data"',
                  'paths = ["**/*.txt"]', 'run = ["ingest"]']
        return "\n".join(lines) + "\n"

    def prepare(self, home, data, variant):
        """Writes the home's paths.json, rules and stamp (once; later starts reuse them)."""
        os.makedirs(home, exist_ok=True)
        stamp, log = write_stamp(home)
        paths = {} if data == os.path.join(home, "Data") else {"data_dir": data}
        with open(os.path.join(home, "paths.json"), "w") as f:
            json.dump(paths, f)
        with open(os.path.join(home, "watch-rules.toml"), "w") as f:
            f.write(self.rules(stamp, variant))
        return log

    def start(self, home, data, variant="main", debug_log=False):
        log = os.path.join(home, "stamp.log")
        if not os.path.exists(log):
            log = self.prepare(home, data, variant)
        env = dict(os.environ)
        env.pop("MEMSCHED_PATHS", None)
        if debug_log:
            env["RUST_LOG"] = "memsched=debug"
            err = open(os.path.join(home, "memsched.err"), "ab")
        else:
            err = open(os.path.join(os.path.dirname(home), f"{os.path.basename(home)}.err"), "ab")
        stamps = StampLog(log, from_end=True)  # before the spawn: its first run may be quick
        with err:
            proc = spawn([self.path, "--paths", os.path.join(home, "paths.json")],
                         cwd=home, env=env, stderr=err)
        return Instance(self, variant, home, data, proc, stamps)

    def once(self, home):
        with open(os.path.join(os.path.dirname(home), f"{os.path.basename(home)}.err"), "ab") as err:
            proc = spawn([self.path, "--paths", os.path.join(home, "paths.json"), "--once",
                          "--mode", "ingest"], cwd=home, stderr=err)
            try:
                status = proc.wait(600)
            finally:
                stop(proc)
        if status != 0:
            raise BenchError(f"{self.column}: --once exited with status {status}")

    def ready_at(self, inst, spawned_ns, _probes):
        """When its startup run finished (ns), from scheduler_log.json; None before that."""
        path = os.path.join(inst.home, "scheduler_log.json")
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None
        if getattr(inst, "log_stat", None) == (st.st_mtime_ns, st.st_size):
            return None  # parsed already, and no run recorded since
        inst.log_stat = (st.st_mtime_ns, st.st_size)
        try:
            with open(path) as f:
                runs = json.load(f).get("runs", [])
        except ValueError:
            return None
        for run in runs:
            if run.get("trigger") != "startup":
                continue
            started = datetime.datetime.fromisoformat(run["started_at"]).timestamp()
            if started * 1e9 >= spawned_ns - 1e7:  # this process's, not an earlier one's
                return datetime.datetime.fromisoformat(run["finished_at"]).timestamp() * 1e9
        return None


class Watchexec:
    kind = "watchexec"
    variants = ("main",)

    def __init__(self, path):
        self.path = path
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
        words = (out.stdout.splitlines() or ["?"])[0].split()  # "watchexec 2.8.0 (date) ..."
        version = words[1] if len(words) > 1 else "?"
        self.column = f"watchexec {version}"
        self.slug = "watchexec"

    def start(self, home, data, variant="main", debug_log=False):
        os.makedirs(home, exist_ok=True)
        log = os.path.join(home, "stamp.log")
        stamp = os.path.join(home, "stamp.sh")
        if not os.path.exists(stamp):
            stamp, log = write_stamp(home)
        argv = [self.path, "--debounce", f"{DEBOUNCE_MS}ms", "-w", data, "-e", "txt",
                "--postpone", "--on-busy-update=queue", "--emit-events-to=file",
                "--shell=none", "--", "sh", stamp]
        name = "watchexec.err" if debug_log else f"../{os.path.basename(home)}.err"
        stamps = StampLog(log, from_end=True)
        with open(os.path.join(home, name), "ab") as err:
            proc = spawn(argv, cwd=home, stderr=err)
        return Instance(self, variant, home, data, proc, stamps)

    def ready_at(self, inst, _spawned_ns, probes):
        """The write time of the earliest probe its step ran for within PROMPT_MS."""
        prompt = [w for p, w in probes
                  if (r := inst.log.reaction(p, 0)) is not None and r - w <= PROMPT_MS * 1e6]
        return min(prompt, default=None)


# ---------------------------------------------------------------- statistics

def pct(values, p):
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def fmt_ms(ms):
    return f"{ms:,.0f} ms" if ms >= 1000 else f"{ms:.1f} ms"


def latency_cell(values, p99=True):
    got = [v for v in values if v is not None]
    if not got:
        return f"no reaction ({len(values)} tries)" if values else "—"
    cell = f"p50 {fmt_ms(statistics.median(got))}"
    if p99:
        cell += f", p99 {fmt_ms(pct(got, 99))}"
    cell += f" (n={len(got)})"
    if len(got) < len(values):
        cell += f", {len(values) - len(got)} missed"
    return cell


def mib(kib):
    return f"{kib / 1024:.1f} MiB"


# ---------------------------------------------------------------- sections

def section_latency(tools, args, root, table):
    n, n_defaults = args.samples, max(3, args.samples // 2)
    insts = []
    for tool in tools:
        for variant in tool.variants:
            home = os.path.join(root, f"lat-{tool.slug}-{variant}")
            data = os.path.join(home, "Data")
            for sub in ("new", "rw"):
                os.makedirs(os.path.join(data, sub))
            for i in range(n):
                path = os.path.join(data, "rw", f"r{i}.txt")
                write_unique(path, "rewrite-target")
                os.utime(path, (OLD, OLD))
            if tool.kind == "memsched":
                tool.prepare(home, data, variant)
            insts.append(tool.start(home, data, variant))
    say(f"latency: {len(insts)} watchers started; waiting for their startup runs")
    for inst in insts:
        if inst.tool.kind == "memsched":  # its startup run records the rewrite targets
            targets = [os.path.join(inst.data, "rw", f"r{i}.txt") for i in range(n)]
            deadline = time.monotonic() + 120
            while not all(inst.log.carried.get(t) for t in targets):
                inst.alive()
                if time.monotonic() > deadline:
                    raise BenchError(f"{inst.tool.column}: the startup run never sent the "
                                     f"{n} files written before it started")
                inst.log.poll()
                time.sleep(0.02)
        inst.warm_up(os.path.join(inst.data, "new"))
    results = {id(inst): {"new": [], "rewrite": []} for inst in insts}
    for i in range(n):
        say(f"latency: sample {i + 1} of {n}")
        for inst in insts:
            if inst.variant == "defaults" and i >= n_defaults:
                continue
            pause = 0.3 if inst.variant == "defaults" else 0.2
            res = results[id(inst)]
            res["new"].append(inst.sample(os.path.join(inst.data, "new", f"n{i}.txt"),
                                          "new", pause_s=pause))
            if inst.variant == "main":
                res["rewrite"].append(inst.sample(os.path.join(inst.data, "rw", f"r{i}.txt"),
                                                  "rewrite", pause_s=pause))
    for inst in insts:
        stop(inst.proc)

    def row(label, variant, key, p99=True):
        cells = {}
        for inst in insts:
            if inst.variant == variant:
                cells[inst.tool.column] = latency_cell(results[id(inst)][key], p99)
        table.append((label, cells))

    row(f"write → step start, new file, debounce {DEBOUNCE_MS} ms (memsched: shipped settle)",
        "main", "new")
    row(f"write → step start, rewritten file, debounce {DEBOUNCE_MS} ms (memsched: shipped settle)",
        "main", "rewrite")
    row(f"write → step start, new file, debounce {DEBOUNCE_MS} ms, `settle = \"0s\"`",
        "settle0", "new")
    row("write → step start, new file, memsched's shipped defaults (no debounce, no settle set)",
        "defaults", "new", p99=False)


def section_storm(tools, args, root, table):
    rows = collections.defaultdict(dict)
    for tool in tools:
        try:
            storm_one(tool, root, rows)
        except BenchError as e:
            say(f"storm: {e}")
            rows["runs"][tool.column] = f"failed: {e}"
            stop_all()
    head = f"storm: 1 process writes {STORM_FILES:,} new files, debounce {DEBOUNCE_MS} ms"
    table.append((f"{head}: step runs started", rows["runs"]))
    table.append(("storm: distinct paths the step saw", rows["paths"]))
    table.append(("storm: paths the step saw in more than one run", rows["twice"]))
    table.append(("storm: last write → start of the last run carrying a storm path", rows["delay"]))
    table.append(("storm: time the writer took (for reference)", rows["writer"]))


def storm_one(tool, root, rows):
    """One tool's storm: its cells go into rows."""
    home = os.path.join(root, f"storm-{tool.slug}")
    data = os.path.join(home, "Data")
    os.makedirs(os.path.join(data, "storm"))
    if tool.kind == "memsched":
        tool.prepare(home, data, "main")
    inst = tool.start(home, data)
    try:
        inst.warm_up(data)
        paths = [os.path.join(data, "storm", f"s{i:05}.txt") for i in range(STORM_FILES)]
        say(f"storm: {tool.column} gets {STORM_FILES:,} files")
        bodies = [f"storm {p} {time.time_ns()}\n".encode() for p in paths]
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        first = time.time_ns()
        for path, body in zip(paths, bodies):  # raw syscalls: as fast as Python goes
            fd = os.open(path, flags, 0o644)
            os.write(fd, body)
            os.close(fd)
        last = time.time_ns()
        log = inst.log
        log.quiet_from = last / 1e9
        # Done when every path was seen and nothing ran for 1.5 s, or nothing ran for
        # 5 s (a tool that lost paths), or after 2 minutes.
        log.wait_quiet(1.5, 120, until=lambda: all(log.carried.get(p) for p in paths),
                       give_up_s=5.0)
        inst.alive()
    finally:
        stop(inst.proc)
    runs = [t for t in log.runs if t > first]
    seen = [p for p in paths if log.carried.get(p)]
    twice = sum(1 for p in seen if len(log.carried[p]) > 1)
    last_run = max((log.carried[p][-1] for p in seen), default=None)
    col = tool.column
    rows["runs"][col] = f"{len(runs)}"
    rows["paths"][col] = f"{len(seen):,} of {STORM_FILES:,}"
    rows["twice"][col] = f"{twice:,}"
    rows["delay"][col] = "—" if last_run is None else fmt_ms((last_run - last) / 1e6)
    rows["writer"][col] = fmt_ms((last - first) / 1e6)


def section_idle(tools, args, root, table):
    insts = []
    for tool in tools:
        home = os.path.join(root, f"idle-{tool.slug}")
        data = os.path.join(home, "Data")
        os.makedirs(data)
        if tool.kind == "memsched":
            tool.prepare(home, data, "main")
        insts.append(tool.start(home, data, debug_log=True))
    for inst in insts:
        inst.warm_up(inst.data)
    time.sleep(3)
    errs = {id(i): os.path.join(i.home, "memsched.err" if i.tool.kind == "memsched"
                                else "watchexec.err") for i in insts}

    def lines(inst):
        with open(errs[id(inst)], "rb") as f:
            return f.read().count(b"\n")

    say(f"idle: measuring {args.idle:.0f} s")
    t0 = time.monotonic()
    meters = {id(i): (Wakeups(i.proc.pid), lines(i)) for i in insts}
    while time.monotonic() - t0 < args.idle:
        time.sleep(0.1)
        for meter, _ in meters.values():
            meter.sample()
    elapsed = time.monotonic() - t0
    rows = collections.defaultdict(dict)
    for inst in insts:
        inst.alive()
        meter, lines0 = meters[id(inst)]
        status = proc_status(inst.proc.pid)
        col = inst.tool.column
        rows["rss"][col] = mib(status["rss_kib"])
        rows["wake"][col] = f"{meter.total() / elapsed:.1f}"
        rows["threads"][col] = str(status["threads"])
        rows["log"][col] = str(lines(inst) - lines0)
        stop(inst.proc)
    span = f"{args.idle:.0f} s idle, log on stderr into the watched home"
    table.append((f"idle ({span}): resident memory (VmRSS)", rows["rss"]))
    table.append(("idle: wakeups per second (context switches, all threads)", rows["wake"]))
    table.append(("idle: threads", rows["threads"]))
    table.append(("idle: lines logged during the window (memsched at debug level)", rows["log"]))


def build_tree(data, nfiles):
    per = nfiles // SCALE_FOLDERS
    say(f"scale: writing {per * SCALE_FOLDERS:,} files in {SCALE_FOLDERS:,} folders")
    for d in range(SCALE_FOLDERS):
        folder = os.path.join(data, f"d{d:03}")
        os.makedirs(folder)
        for i in range(per):
            path = os.path.join(folder, f"m{i:04}.txt")
            with open(path, "w") as f:
                f.write(f"memory {d}/{i} {os.urandom(8).hex()}\n")
            os.utime(path, (OLD, OLD))  # long settled, as a real home's files are
    os.makedirs(os.path.join(data, "zz-probes"))


def clear_probes(data):
    folder = os.path.join(data, "zz-probes")
    for name in os.listdir(folder):
        os.unlink(os.path.join(folder, name))


def measure_ready(tool, home, data, args, tag):
    """Spawns the tool and probes it; see the docstring's "scale" for what ready means."""
    probes_dir = os.path.join(data, "zz-probes")
    probes = []
    spawned = time.time_ns()
    inst = tool.start(home, data)
    log = inst.log
    deadline = time.monotonic() + args.ready_timeout
    next_probe, ready, stop_probing_at, runs_checked = time.monotonic(), None, None, 0
    try:
        while True:
            now = time.monotonic()
            if now >= next_probe:
                path = os.path.join(probes_dir, f"{tag}-p{len(probes):05}.txt")
                probes.append((path, write_unique(path, "probe")))
                next_probe += PROBE_EVERY_S
            log.poll()
            inst.alive()
            # memsched's check is a stat of its log; watchexec's looks at the probes, so
            # only when a run has started since the last look.
            if ready is None and (tool.kind == "memsched" or len(log.runs) != runs_checked):
                runs_checked = len(log.runs)
                ready = tool.ready_at(inst, spawned, probes)
                if ready is not None:
                    stop_probing_at = now + 0.3
            if stop_probing_at is not None and now >= stop_probing_at:
                break
            if now > deadline:
                raise BenchError(f"{tool.column} not ready {args.ready_timeout:.0f} s after start")
            time.sleep(max(0.0, min(0.002, next_probe - time.monotonic())))
        log.quiet_from = time.time()
        want = [p for p, _ in probes] if tool.kind == "memsched" else []
        if not log.wait_quiet(1.0, 120, until=lambda: all(log.carried.get(p) for p in want)):
            say(f"{tool.column}: not every probe reached the step within 2 minutes")
        status = proc_status(inst.proc.pid)
        lat = [inst.sample(os.path.join(probes_dir, f"{tag}-s{i}.txt"), "single", pause_s=0.5)
               for i in range(args.scale_samples)]
        inst.alive()
    finally:
        stop(inst.proc)
    seen = [w for p, w in probes if log.carried.get(p)]
    return {"ready_ms": (ready - spawned) / 1e6,
            "earliest_ms": (min(seen) - spawned) / 1e6 if seen else None,
            "probes": len(probes), "seen": len(seen),
            "rss": status["rss_kib"], "hwm": status["hwm_kib"], "lat": lat}


def section_scale(tools, args, root, table):
    data = os.path.join(root, "big", "Data")
    build_tree(data, args.files)
    results = collections.defaultdict(dict)
    for tool in tools:
        home = os.path.join(root, "big", tool.slug)
        if tool.kind == "memsched":
            tool.prepare(home, data, "main")
        for state in ("empty", "recorded"):
            if state == "recorded" and tool.kind == "memsched":
                say(f"scale: {tool.column} --once")
                tool.once(home)
            say(f"scale: {tool.column}, {state} state")
            try:
                results[state][tool.column] = measure_ready(tool, home, data, args,
                                                            f"{tool.slug}-{state}")
            except BenchError as e:
                say(f"scale: {e}")
                results[state][tool.column] = {"error": str(e)}
                stop_all()
            clear_probes(data)
    n = f"{args.files:,} files in {SCALE_FOLDERS:,} folders"
    for state, what in (("recorded", "state recorded (after `--once`)"), ("empty", "empty state")):
        failed = {c: f"failed: {r['error']}" for c, r in results[state].items() if "error" in r}
        res = {c: r for c, r in results[state].items() if "error" not in r}
        table.append((f"{n}, {what}: ready to react after",
                      {**failed, **{c: fmt_ms(r["ready_ms"]) for c, r in res.items()}}))
        table.append((f"{n}, {what}: VmRSS after startup (peak VmHWM)",
                      {c: f"{mib(r['rss'])} ({mib(r['hwm'])})" for c, r in res.items()}))
        table.append((f"{n}, {what}: earliest probe reaching the step, written at",
                      {c: ("never" if r["earliest_ms"] is None else fmt_ms(r["earliest_ms"]))
                       + f" ({r['seen']} of {r['probes']} probes seen)" for c, r in res.items()}))
        table.append((f"{n}, {what}: then write → step start",
                      {c: latency_cell(r["lat"]) for c, r in res.items()}))


# ---------------------------------------------------------------- main

def machine():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs ({model}), Linux {platform.release()}"


def find_watchexec(args):
    if args.no_watchexec:
        return None
    if args.watchexec:
        if not os.access(args.watchexec, os.X_OK):
            raise BenchError(f"--watchexec {args.watchexec}: not an executable file")
        return args.watchexec
    found = shutil.which("watchexec")
    cargo = os.path.expanduser("~/.cargo/bin/watchexec")
    return found or (cargo if os.access(cargo, os.X_OK) else None)


def parse_args():
    ap = argparse.ArgumentParser(
        description=__doc__.split("\nusage:")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="sections: latency, storm, idle, scale\n"
               "example: benches/compare.py --memsched before=/tmp/memsched-old "
               "--memsched after=target/x86_64-unknown-linux-gnu/release/memsched")
    ap.add_argument("--memsched", action="append", metavar="LABEL=PATH",
                    help="a memsched binary to measure (repeatable; default "
                         "now=target/x86_64-unknown-linux-gnu/release/memsched)")
    ap.add_argument("--watchexec", metavar="PATH",
                    help="watchexec binary (default: on PATH, else ~/.cargo/bin/watchexec)")
    ap.add_argument("--no-watchexec", action="store_true", help="measure memsched alone")
    ap.add_argument("--quick", action="store_true",
                    help="fewer samples, 20,000 files instead of 100,000, 5 s of idle")
    ap.add_argument("--skip", action="append", default=[], metavar="SECTIONS",
                    help="comma-separated sections to skip (repeatable)")
    ap.add_argument("--samples", type=int, help="latency samples per row (default 40, quick 10)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folders")
    args = ap.parse_args()
    args.samples = args.samples or (10 if args.quick else 40)
    args.files = 20_000 if args.quick else 100_000
    args.idle = 5.0 if args.quick else 10.0
    args.scale_samples = 5 if args.quick else 10
    args.ready_timeout = 300.0
    args.skip = {s.strip() for arg in args.skip for s in arg.split(",") if s.strip()}
    unknown = args.skip - set(SECTIONS)
    if unknown:
        ap.error(f"unknown section(s) {', '.join(sorted(unknown))}; sections: {', '.join(SECTIONS)}")
    return args


def memsched_tools(args):
    specs = args.memsched or [f"now={os.path.join(REPO, 'target', 'x86_64-unknown-linux-gnu', 'release', 'memsched')}"]
    tools = []
    for spec in specs:
        label, sep, path = spec.partition("=")
        if not sep or not label or not path:
            raise BenchError(f"--memsched {spec!r}: expected LABEL=PATH")
        path = os.path.abspath(path)
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            raise BenchError(f"--memsched {label}: {path} is not an executable file "
                             "(build it with `cargo build --release`)")
        if any(t.label == label for t in tools):
            raise BenchError(f"--memsched {label}: the label is used twice")
        tools.append(Memsched(label, path))
    return tools


def print_table(table, columns, header):
    print("\n".join(header))
    print()
    print("| | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for label, cells in table:
        print(f"| {label} | " + " | ".join(cells.get(c, "—") for c in columns) + " |")


def main():
    args = parse_args()
    signal.signal(signal.SIGTERM, on_signal)
    atexit.register(stop_all)
    tools = memsched_tools(args)
    wx = find_watchexec(args)
    notes = []
    if wx:
        tools.append(Watchexec(wx))
    elif not args.no_watchexec:
        notes.append("watchexec not found (on PATH or in ~/.cargo/bin); install it with "
                     "`cargo install watchexec-cli --locked`. memsched's columns alone.")
        say(notes[-1])
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    root = tempfile.mkdtemp(prefix="memsched-compare-", dir=base)
    started = datetime.datetime.now(datetime.timezone.utc)
    table = []
    try:
        for name in SECTIONS:
            if name in args.skip:
                continue
            say(f"section {name}")
            try:
                globals()[f"section_{name}"](tools, args, root, table)
            except BenchError as e:
                say(f"section {name} failed: {e}")
                notes.append(f"section {name} failed: {e}")
                stop_all()
    finally:
        stop_all()
        if args.keep:
            say(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    header = [f"memsched vs watchexec, {started:%Y-%m-%d %H:%M} UTC, "
              f"{time.time() - started.timestamp():.0f} s",
              "",
              f"- machine: {machine()}; folders on {'tmpfs' if base else '/tmp'}",
              "- command: `" + " ".join(["python3", "benches/compare.py", *sys.argv[1:]]) + "`",
              *[f"- {t.column}: `{t.path}`" for t in tools],
              *[f"- {n}" for n in notes]]
    print_table(table, [t.column for t in tools], header)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        print(f"compare.py: error: {e}", file=sys.stderr)
        sys.exit(1)
