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

Samples are interleaved between the tools (one reacts at a time) so load falls on each
alike; reported as p50 and p99 (nearest rank).

usage: benches/faiss_latency.py [--memsched LABEL=PATH]... [--samples N] [--debounce MS]
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


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, int(round(p / 100 * len(xs) + 0.5)) - 1))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--memsched", action="append", default=[], metavar="LABEL=PATH")
    ap.add_argument("--samples", type=int, default=15)
    ap.add_argument("--debounce", type=int, default=100)
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
    if not wx:
        print("\nwatchexec not found: install it with `cargo install watchexec-cli --locked`")
    shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
