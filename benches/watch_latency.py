#!/usr/bin/env python3
"""Benchmark: how fast the watcher reacts, and what it costs while idle.

Starts `memsched` (the watcher) on a temp pipeline whose ingest step appends the time it
started to a file, then:
  - latency: writes one new .txt file at a time (N times) and measures from the write to
    the step's start; reported against the configured debounce, the floor by design;
  - idle: measures the watcher's CPU time (utime + stime from /proc) over S idle seconds,
    beside a `sleep` process measured the same way as the baseline.

usage: benches/watch_latency.py [--files N] [--idle S] [--debounce D] [--bin PATH]
(default: 10 files, 10 s idle, debounce 200ms, target/release/memsched)
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
STEP = "import sys, time; open(sys.argv[1], 'a').write(f'{time.time()}\\n')"


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_for_lines(path, n, deadline):
    while time.time() < deadline:
        try:
            with open(path) as f:
                lines = f.read().split()
            if len(lines) >= n:
                return [float(x) for x in lines]
        except FileNotFoundError:
            pass
        time.sleep(0.005)
    raise SystemExit(f"timed out waiting for {n} step runs")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=10)
    ap.add_argument("--idle", type=float, default=10.0)
    ap.add_argument("--debounce", default="200ms")
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/memsched"))
    args = ap.parse_args()
    if not os.path.exists(args.bin):
        subprocess.run(["cargo", "build", "--release", "--locked"], cwd=ROOT, check=True)
    with tempfile.TemporaryDirectory(prefix="memsched-bench-") as home:
        os.makedirs(os.path.join(home, "Data"))
        log = os.path.join(home, "step-times")
        with open(os.path.join(home, "paths.json"), "w") as f:
            json.dump({"state_dir": "state"}, f)
        with open(os.path.join(home, "watch-rules.toml"), "w") as f:
            f.write(f'debounce = "{args.debounce}"\n[actions.ingest]\n'
                    f'command = ["python3", "-c", {json.dumps(STEP)}, {json.dumps(log)}, "{{files}}"]\n'
                    'settle = "0s"\n\n[[rules]]\nname = "memories"\nin = "data"\npaths = ["**/*.txt"]\nrun = ["ingest"]\n')
        watcher = subprocess.Popen([args.bin, "--paths", os.path.join(home, "paths.json")],
                                   stderr=subprocess.DEVNULL)
        try:
            while not os.path.exists(os.path.join(home, "state", "scheduler_log.json")):
                time.sleep(0.01)
            latencies = []
            for i in range(args.files):
                written = time.time()
                with open(os.path.join(home, "Data", f"m{i}.txt"), "w") as f:
                    f.write(f"memory {i}")
                started = wait_for_lines(log, i + 1, time.time() + 30)[-1]
                latencies.append(started - written)
                time.sleep(0.3)
            time.sleep(1.0)
            sleeper = subprocess.Popen(["sleep", str(args.idle + 5)])
            w0, s0 = cpu_seconds(watcher.pid), cpu_seconds(sleeper.pid)
            time.sleep(args.idle)
            w1, s1 = cpu_seconds(watcher.pid), cpu_seconds(sleeper.pid)
            sleeper.kill()
        finally:
            watcher.terminate()
            watcher.wait(timeout=30)
    med = statistics.median(latencies)
    print(f"reaction latency (write -> step start), {args.files} files, debounce {args.debounce}:")
    print(f"  median {med * 1000:.0f} ms, min {min(latencies) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms")
    print(f"idle CPU over {args.idle:.0f} s: watcher {(w1 - w0) * 1000:.0f} ms, sleep baseline {(s1 - s0) * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
