#!/usr/bin/env python3
"""Benchmark: save -> searchable on the FAISS reference pipeline (examples/faiss).

A sample writes a new memory holding a word no other memory has, closes it, and waits
until the FAISS index's side-car (index/chunks.json, renamed into place after the index
itself, see store.py) holds that word: from then on search.py finds it. Each watcher
under test runs the example's own ingest.py through the real FAISS venv:

  memsched  `memsched --paths HOME/paths.json` with the example's watch-rules.toml,
            debounce set to --debounce, twice: with the step started per batch
            ("one-shot": `ingest.py add {files}`) and with the resident step the rules
            ship (`ingest.py --resident`, issue 19), when the binary knows it;
  watchexec `watchexec --debounce D -w Data -e txt --postpone --on-busy-update=queue
            --shell=sh -- "find Data -name '*.txt' -print0 | xargs -0 .venv/bin/python
            ingest.py add"` when it is installed (it cannot say which file changed, so the
            step is given every memory: each is re-embedded each time, as a user of a
            plain watcher would do).

With --burst N, each tool in turn then gets N new memories written as fast as one process
can and one more 0.3 s later: the time from the last write until all N are searchable, the
extra save's close -> searchable, and how many step runs (one-shot) or resident batches
memsched's ingest made (from scheduler_log.json).

Samples are interleaved between the tools (one reacts at a time) so load falls on each
alike; reported as p50 and p99 (nearest rank).

usage: benches/faiss_latency.py [--memsched LABEL=PATH]... [--samples N] [--debounce MS]
                                [--burst N] [--deadline S]
needs examples/faiss/.venv (see examples/faiss/README.md)
"""
import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "faiss")


ONE_SHOT = {
    "command": '[".venv/bin/python", "ingest.py", "add", "{files}"]',
    "remove": '[".venv/bin/python", "ingest.py", "remove", "{files}"]',
}


def one_shot(rules):
    """The rules with ingest.py started per batch instead of resident."""
    out = []
    for line in rules.splitlines():
        key = line.split("=", 1)[0].strip()
        if key in ("resident", "idle_exit"):
            continue
        out.append(f"{key} = {ONE_SHOT[key]}" if key in ONE_SHOT and "--resident" in line else line)
    return "\n".join(out) + "\n"


def home_for(base, label, debounce_ms, with_remove, resident=False):
    home = os.path.join(base, label)
    os.makedirs(os.path.join(home, "Data"))
    for name in os.listdir(EXAMPLE):
        src = os.path.join(EXAMPLE, name)
        if os.path.isfile(src):
            shutil.copy(src, home)
    os.symlink(os.path.join(EXAMPLE, ".venv"), os.path.join(home, ".venv"))
    rules = open(os.path.join(home, "watch-rules.toml")).read()
    rules = rules.replace('debounce = "500ms"', f'debounce = "{debounce_ms}ms"')
    rules = rules.replace('settle = "2s"', 'settle = "0s"')
    if not resident:
        rules = one_shot(rules)
    if not with_remove:
        rules = "\n".join(l for l in rules.splitlines() if not l.startswith("remove ="))
    # Upload is not what this measures: the index only.
    cut = rules.index("[actions.upload]")
    rest = rules[cut:]
    rules = rules[:cut] + rest[rest.index("[actions.watchdog]"):]
    open(os.path.join(home, "watch-rules.toml"), "w").write(rules)
    return home


def indexed(home, word):
    try:
        with open(os.path.join(home, "index", "chunks.json")) as f:
            return word in f.read()
    except (OSError, ValueError):
        return False


def sample(home, n, deadline_s=60):
    word = f"zq{n}x{os.getpid()}w{time.time_ns()}"
    path = os.path.join(home, "Data", f"m{n}.txt")
    with open(path, "w") as f:
        f.write(f"memory number {n} says {word}\n")
    closed = time.perf_counter()
    end = closed + deadline_s
    while not indexed(home, word):
        if time.perf_counter() > end:
            return None
        time.sleep(0.005)
    return (time.perf_counter() - closed) * 1000


def words_indexed(home, words):
    """How many of `words` the side-car holds."""
    try:
        with open(os.path.join(home, "index", "chunks.json")) as f:
            text = f.read()
    except OSError:
        return 0
    return sum(1 for w in words if w in text)


def ingest_batches(home, since):
    """Step runs (one-shot) or resident batches ingest made in runs started after `since`
    (an ISO time), from scheduler_log.json; None for a home memsched does not run."""
    try:
        runs = json.load(open(os.path.join(home, "state", "scheduler_log.json")))["runs"]
    except (OSError, ValueError, KeyError):
        return None
    total = 0
    for run in runs:
        if run.get("started_at", "") < since:
            continue
        for action in run.get("actions", []):
            if action.get("action") == "ingest":
                total += int(action.get("counts", {}).get("batches", 0) or 0)
    return total


def burst(home, n, deadline_s):
    """Writes `n` memories as fast as one process can, then one more 0.3 s later (a save
    made while the burst is still being ingested). Returns (last write -> all `n`
    searchable in ms, that one save's close -> searchable in ms, ingest batches run)."""
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 1))
    tag = f"b{os.getpid()}t{time.time_ns()}"
    words = [f"zq{tag}n{i}x" for i in range(n)]
    for i, word in enumerate(words):
        with open(os.path.join(home, "Data", f"burst-{tag}-{i:05d}.txt"), "w") as f:
            f.write(f"burst memory {i} says {word}\n")
    last = time.perf_counter()
    time.sleep(0.3)
    fresh = f"zq{tag}fresh"
    with open(os.path.join(home, "Data", f"fresh-{tag}.txt"), "w") as f:
        f.write(f"a fresh memory says {fresh}\n")
    fresh_closed = time.perf_counter()
    all_at = fresh_at = None
    end = last + deadline_s
    while (all_at is None or fresh_at is None) and time.perf_counter() < end:
        now = time.perf_counter()
        if fresh_at is None and indexed(home, fresh):
            fresh_at = now
        if all_at is None and words_indexed(home, words) == n:
            all_at = now
        time.sleep(0.02)
    ms = lambda at, since: None if at is None else (at - since) * 1000
    # The batches are counted once memsched has recorded its runs.
    time.sleep(1)
    return ms(all_at, last), ms(fresh_at, fresh_closed), ingest_batches(home, since)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, int(round(p / 100 * len(xs) + 0.5)) - 1))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--memsched", action="append", default=[], metavar="LABEL=PATH")
    ap.add_argument("--samples", type=int, default=15)
    ap.add_argument("--debounce", type=int, default=100)
    ap.add_argument("--burst", type=int, default=0, metavar="N",
                    help="then, tool by tool, a burst of N memories and one save during it")
    ap.add_argument("--deadline", type=float, default=20, metavar="S",
                    help="a sample not searchable within S seconds counts as never")
    args = ap.parse_args()
    if not args.memsched:
        args.memsched = ["memsched=" + os.path.join(ROOT, "target/x86_64-unknown-linux-gnu/release/memsched")]
    base = tempfile.mkdtemp(prefix="faiss-latency-")
    procs, homes, missing = [], [], []
    for spec in args.memsched:
        label, path = spec.split("=", 1)
        help_text = subprocess.run([path, "--help"], capture_output=True, text=True).stdout
        with_remove = "confirm-removals" in help_text
        for resident in (False, True):
            name = label + ("-resident" if resident else "")
            home = home_for(base, name, args.debounce, with_remove, resident)
            rules = os.path.join(home, "watch-rules.toml")
            knows = subprocess.run([path, "--paths", os.path.join(home, "paths.json"), "--rules",
                                    rules, "check"], capture_output=True).returncode == 0
            if not knows:
                missing.append(f"memsched {label}, resident step: its rules do not load")
                continue
            p = subprocess.Popen([path, "--paths", os.path.join(home, "paths.json")],
                                 stderr=open(os.path.join(base, name + ".err"), "w"))
            procs.append(p)
            step = "resident step" if resident else "step per batch"
            homes.append((f"memsched {label}, {step}", home))
    wx = shutil.which("watchexec")
    if wx:
        home = home_for(base, "watchexec", args.debounce, False)
        # ingest.py takes memory files, never a folder (it refuses what is not a file in
        # Data), so the watcher's command lists them, as a user of a plain watcher would.
        p = subprocess.Popen([wx, "--debounce", f"{args.debounce}ms", "-w", "Data", "-e", "txt",
                              "--postpone", "--on-busy-update=queue", "--shell=sh", "--",
                              "find Data -name '*.txt' -print0 | xargs -0 .venv/bin/python ingest.py add"],
                             cwd=home, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(p)
        homes.append(("watchexec, whole folder per change", home))
    # Startup runs are not measured: memsched's has finished once it is in the log;
    # watchexec (--postpone) runs nothing until the first change.
    for label, home in homes:
        log = os.path.join(home, "state", "scheduler_log.json")
        end = time.time() + 60
        while label.startswith("memsched") and not os.path.exists(log) and time.time() < end:
            time.sleep(0.05)
    results = {label: [] for label, _ in homes}
    try:
        for n in range(args.samples):
            for label, home in homes:
                ms = sample(home, n, args.deadline)
                if ms is not None:
                    results[label].append(ms)
                time.sleep(0.3)
        bursts = {}
        for label, home in homes if args.burst else []:
            bursts[label] = burst(home, args.burst, max(args.deadline, 120))
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(timeout=30)
    print(f"save -> searchable on examples/faiss, debounce {args.debounce} ms, {args.samples} samples each, load average {os.getloadavg()[0]:.1f}\n")
    print("| | p50 | p99 | n |")
    print("|---|---|---|---|")
    for label, xs in results.items():
        if xs:
            print(f"| {label} | {statistics.median(xs):,.0f} ms | {pct(xs, 99):,.0f} ms | {len(xs)} |")
        else:
            print(f"| {label} | — | — | 0 (never searchable within {args.deadline:g} s) |")
    for label in missing:
        print(f"| {label} | — | — | 0 |")
    if args.burst:
        print(f"\na burst of {args.burst} new memories, then one save 0.3 s after its last write\n")
        print("| | last write -> all searchable | the save during it: close -> searchable | ingest batches (step runs or resident batches) |")
        print("|---|---|---|---|")
        shown = lambda ms: "never" if ms is None else f"{ms:,.0f} ms"
        for label, (all_ms, fresh_ms, batches) in bursts.items():
            print(f"| {label} | {shown(all_ms)} | {shown(fresh_ms)} | {'—' if batches is None else batches} |")
    if not wx:
        print("\nwatchexec not found: install it with `cargo install watchexec-cli --locked`")
    shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
