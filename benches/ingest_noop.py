#!/usr/bin/env python3
"""Benchmark: ingest at scale, each figure beside a baseline measured in the same run.

For each tree size N (files of 4 KiB in N/100 folders) it prints:
  hashing:  `memsched --once --mode ingest --dry-run` on empty state (walk + hash every
            file, side by side on every core) against `sha256sum` over the same files
            (one process, as `find -print0 | xargs -0 sha256sum` runs it);
  no-op:    after one real run ingested the tree, R interleaved runs each of
              find DATA -type f -name '*.txt' -printf '%s %T@ %i\\n'
              memsched --once --mode ingest --json
            the medians, their ratio, and how many files the no-op run read (must be 0);
  watcher:  (--watcher) the time from starting `memsched --mode ingest` until its
            startup run has finished (ready to react), with the state recorded and from
            empty state, and its resident memory (VmRSS) then, with the peak (VmHWM).

usage: benches/ingest_noop.py [--files N ...] [--runs R] [--watcher] [--bin PATH]
(default: 10000 files, 15 runs, target/x86_64-unknown-linux-gnu/release/memsched, built first if missing)
"""
import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def timed(argv, **kw):
    start = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.PIPE, **kw)
    return time.perf_counter() - start, proc


def build_tree(home, n):
    data = os.path.join(home, "Data")
    folders = max(n // 100, 1)
    block = b"x" * 4000
    old = time.time() - 3600
    for i in range(n):
        d = os.path.join(data, f"d{i % folders:04d}")
        if i < folders:
            os.makedirs(d, exist_ok=True)
        p = os.path.join(d, f"memory-{i:06d}.txt")
        with open(p, "wb") as f:
            f.write(block + f"{i:096d}".encode())
        os.utime(p, (old, old))
    with open(os.path.join(home, "paths.json"), "w") as f:
        json.dump({"data_dir": "Data", "state_dir": "state"}, f)
    with open(os.path.join(home, "watch-rules.toml"), "w") as f:
        f.write('tick = "1d"\n[actions.ingest]\ncommand = ["true", "{files}"]\nbatch_size = 1000\n')
    return data


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def watcher_ready(args, home):
    """Seconds from start until the startup run is done, and VmRSS/VmHWM (KiB) then."""
    # The loop logs each action's outcome when a run finishes: at info when it did
    # something, at debug when it found nothing to do (issue 20: a quiet run is no news).
    env = dict(os.environ, RUST_LOG="memsched=info,memsched::daemon::event_loop=debug")
    start = time.perf_counter()
    proc = subprocess.Popen(
        [args.bin, "--paths", os.path.join(home, "paths.json"), "--mode", "ingest"],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env, text=True)
    ready = threading.Event()
    lines = []

    def read():
        for line in proc.stderr:
            lines.append(line)
            # The loop logs each action's outcome when a run finishes.
            if "ingest: " in line and any(w in line for w in ("nothing to do:", "ran:", "failed:")):
                ready.set()
    threading.Thread(target=read, daemon=True).start()
    ok = ready.wait(120)
    took = time.perf_counter() - start
    time.sleep(0.3)  # let the run thread exit and hand its memory back
    rss, hwm = status_kib(proc.pid, "VmRSS"), status_kib(proc.pid, "VmHWM")
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)
    if not ok:
        sys.exit("the watcher's startup run never finished:\n" + "".join(lines[-20:]))
    return took, rss, hwm


def one_size(args, n):
    print(f"== {n} files of 4 KiB in {max(n // 100, 1)} folders")
    with tempfile.TemporaryDirectory(prefix="memsched-bench-") as home:
        data = build_tree(home, n)
        paths = os.path.join(home, "paths.json")
        once = [args.bin, "--paths", paths, "--once", "--mode", "ingest", "--json"]

        # Hashing, empty state: the dry run walks and hashes every file, writes nothing.
        lister = subprocess.run(["find", data, "-type", "f", "-name", "*.txt", "-print0"],
                                stdout=subprocess.PIPE, check=True).stdout
        sums, plans = [], []
        for _ in range(3):
            t, _ = timed(["xargs", "-0", "sha256sum"], input=lister, check=True)
            sums.append(t)
            t, proc = timed(once + ["--dry-run"], check=True)
            plans.append(t)
            assert json.loads(proc.stdout)["actions"][0]["counts"]["hashed"] == n
        s, p = statistics.median(sums), statistics.median(plans)
        print(f"sha256sum (1 process)      median {s * 1000:8.1f} ms")
        print(f"memsched walk + hash       median {p * 1000:8.1f} ms  "
              f"({os.cpu_count()} cores)  ratio memsched/sha256sum: {p / s:.2f}x")

        t, first = timed(once, check=True)
        done = json.loads(first.stdout)["actions"][0]["counts"]["done"]
        print(f"first run (hash, {n // 1000} batches of `true`, record)  {t * 1000:8.1f} ms; ingested {done}")

        baseline = ["find", data, "-type", "f", "-name", "*.txt", "-printf", "%s %T@ %i\\n"]
        base_times, ours = [], []
        hashed = None
        for _ in range(args.runs):
            t, _ = timed(baseline)
            base_times.append(t)
            t, proc = timed(once)
            ours.append(t)
            counts = json.loads(proc.stdout)["actions"][0]["counts"]
            hashed = counts["hashed"]
            assert counts["unchanged"] == n, counts
        b, m = statistics.median(base_times), statistics.median(ours)
        bar = 1.5 if n <= 10000 else 2.0
        print(f"baseline find              median {b * 1000:8.1f} ms  (min {min(base_times) * 1000:.1f})")
        print(f"memsched no-op             median {m * 1000:8.1f} ms  (min {min(ours) * 1000:.1f})")
        print(f"ratio memsched/find: {m / b:.2f}x (bar: at most {bar}x)")
        print(f"files hashed by the no-op run: {hashed} (bar: 0)")

        if args.watcher:
            took, rss, hwm = watcher_ready(args, home)
            print(f"watcher ready, state recorded:  {took * 1000:7.0f} ms (bar 640); "
                  f"VmRSS {rss / 1024:.1f} MiB (bar 30), peak {hwm / 1024:.1f} MiB")
            shutil.rmtree(os.path.join(home, "state"))
            took, rss, hwm = watcher_ready(args, home)
            print(f"watcher ready, empty state:     {took * 1000:7.0f} ms (bar 1000); "
                  f"VmRSS {rss / 1024:.1f} MiB (bar 30), peak {hwm / 1024:.1f} MiB")
        return hashed == 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, nargs="+", default=[10000])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--watcher", action="store_true")
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/x86_64-unknown-linux-gnu/release/memsched"))
    args = ap.parse_args()
    if not os.path.exists(args.bin):
        subprocess.run(["cargo", "build", "--release", "--locked"], cwd=ROOT, check=True)
    ok = all([one_size(args, n) for n in args.files])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
