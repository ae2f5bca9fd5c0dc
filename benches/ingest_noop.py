#!/usr/bin/env python3
"""Benchmark: a no-op ingest over a tree that is already ingested.

Builds a tree of N files of 4 KiB, ingests it once (with `true` as the step), then times,
side by side and interleaved, R runs each of:
  baseline: find DATA -type f -name '*.txt' -printf '%s %T@ %i\\n' >/dev/null
  memsched: memsched --once --mode ingest --json
and prints the medians, the ratio memsched/baseline, and how many files the no-op run
hashed (the plan's `hashed` count: it must be 0, no file's content is read).

usage: benches/ingest_noop.py [--files N] [--runs R] [--bin PATH]
(default: 10000 files, 15 runs, target/release/memsched, built first if missing)
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def timed(argv, **kw):
    start = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.PIPE, **kw)
    return time.perf_counter() - start, proc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=10000)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/memsched"))
    args = ap.parse_args()
    if not os.path.exists(args.bin):
        subprocess.run(["cargo", "build", "--release", "--locked"], cwd=ROOT, check=True)

    with tempfile.TemporaryDirectory(prefix="memsched-bench-") as home:
        data = os.path.join(home, "Data")
        block = b"x" * 4000
        old = time.time() - 3600
        for i in range(args.files):
            d = os.path.join(data, f"d{i % 100:02d}")
            os.makedirs(d, exist_ok=True)
            p = os.path.join(d, f"memory-{i:05d}.txt")
            with open(p, "wb") as f:
                f.write(block + f"{i:096d}".encode())
            os.utime(p, (old, old))
        with open(os.path.join(home, "paths.json"), "w") as f:
            json.dump({"data_dir": "Data"}, f)
        with open(os.path.join(home, "watch-rules.toml"), "w") as f:
            f.write('[actions.ingest]\ncommand = ["true", "{files}"]\nbatch_size = 1000\n')
        memsched = [args.bin, "--paths", os.path.join(home, "paths.json"), "--once", "--mode", "ingest", "--json"]
        first = subprocess.run(memsched, stdout=subprocess.PIPE, check=True)
        done = json.loads(first.stdout)["actions"][0]["counts"]["done"]
        print(f"tree: {args.files} files of 4 KiB; first run ingested {done}")

        baseline = ["find", data, "-type", "f", "-name", "*.txt", "-printf", "%s %T@ %i\\n"]
        base_times, ours = [], []
        hashed = None
        for _ in range(args.runs):
            t, _ = timed(baseline)
            base_times.append(t)
            t, proc = timed(memsched)
            ours.append(t)
            counts = json.loads(proc.stdout)["actions"][0]["counts"]
            hashed = counts["hashed"]
            assert counts["unchanged"] == args.files, counts
        b, m = statistics.median(base_times), statistics.median(ours)
        print(f"baseline find      median {b * 1000:8.1f} ms  (min {min(base_times) * 1000:.1f})")
        print(f"memsched no-op     median {m * 1000:8.1f} ms  (min {min(ours) * 1000:.1f})")
        print(f"ratio memsched/find: {m / b:.2f}x (bar: at most 3x)")
        print(f"files hashed by the no-op run: {hashed} (bar: 0)")
        return 0 if hashed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
