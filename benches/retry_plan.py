#!/usr/bin/env python3
"""Benchmark: planning the retry of a large task queue.

Writes a task_queue.json of N tasks (mixed steps, priorities and statuses; most failed and
due), then runs `memsched --once --mode retry --dry-run --json` R times and prints the
plan time memsched reports (`counts.plan_ms`: ranking, without reading the file) and the
whole run's wall time (reading and parsing the file included), with `python3 -c pass` as
the process-start baseline measured in the same run.

usage: benches/retry_plan.py [--tasks N] [--runs R] [--bin PATH]
(default: 100000 tasks, 7 runs, target/x86_64-unknown-linux-gnu/release/memsched, built first if missing)
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=100000)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/x86_64-unknown-linux-gnu/release/memsched"))
    args = ap.parse_args()
    if not os.path.exists(args.bin):
        subprocess.run(["cargo", "build", "--release", "--locked"], cwd=ROOT, check=True)

    steps = ["ingest", "upload", "embed", "sync"]
    priorities = ["critical", "high", "normal", "normal", "low"]
    statuses = ["failed"] * 7 + ["done", "running", "pending"]
    tasks = []
    for i in range(args.tasks):
        tasks.append({
            "id": f"task-{i:06d}",
            "step": steps[i % len(steps)],
            "status": statuses[i % len(statuses)],
            "attempts": i % 4,
            "priority": priorities[i % len(priorities)],
            "created_at": f"2026-{1 + i % 12:02d}-{1 + i % 28:02d}T{i % 24:02d}:00:00Z",
            "updated_at": "2026-11-25T00:00:00Z",
            "last_error": "exit 1: connection reset by peer",
            "command": ["python3", "retry_runner.py", f"task-{i:06d}"],
        })
    with tempfile.TemporaryDirectory(prefix="memsched-bench-") as home:
        with open(os.path.join(home, "paths.json"), "w") as f:
            json.dump({}, f)
        with open(os.path.join(home, "task_queue.json"), "w") as f:
            json.dump({"tasks": tasks}, f)
        size = os.path.getsize(os.path.join(home, "task_queue.json"))
        with open(os.path.join(home, "watch-rules.toml"), "w") as f:
            f.write('[actions.retry]\ncommand = ["true", "{task_id}"]\nweights = { ingest = 10 }\n')
        argv = [args.bin, "--paths", os.path.join(home, "paths.json"), "--once", "--mode", "retry", "--dry-run", "--json"]
        plan_ms, walls, bases, due = [], [], [], None
        for _ in range(args.runs):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", "pass"], check=True)
            bases.append(time.perf_counter() - start)
            start = time.perf_counter()
            out = subprocess.run(argv, stdout=subprocess.PIPE, check=True)
            walls.append(time.perf_counter() - start)
            counts = json.loads(out.stdout)["actions"][0]["counts"]
            plan_ms.append(counts["plan_ms"])
            due = counts["due"]
        print(f"queue: {args.tasks} tasks, {size / 1e6:.1f} MB; {due} due")
        print(f"plan (rank, no I/O)    median {statistics.median(plan_ms):8.1f} ms")
        print(f"whole dry run          median {statistics.median(walls) * 1000:8.1f} ms")
        print(f"python3 -c pass        median {statistics.median(bases) * 1000:8.1f} ms (process-start baseline)")
        print(f"whole run / baseline: {statistics.median(walls) / statistics.median(bases):.1f}x (bar: well under a second)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
