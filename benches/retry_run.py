#!/usr/bin/env python3
"""Benchmark: retrying many due tasks with a step that does nothing (issue 8).

Writes a task_queue.json of N failed, due tasks, runs `memsched --once --mode retry` once
over them with the retry command `/bin/true {task_id}`, and compares its wall time with
the step alone: the same N runs of `/bin/true TASK_ID` from a shell loop (fork, exec,
wait), measured in the same run, interleaved. The bar is memsched ≤ 2× the step alone.
Every task must end `done`. Besides wall time (the median of each pair's ratio), the CPU
time of each (user + system, with every child process) is compared: on a machine shared
with other work, wall time mostly measures the neighbours.

usage: benches/retry_run.py [--tasks N] [--runs R] [--bin PATH]
(default: 10000 tasks, 5 runs, target/x86_64-unknown-linux-gnu/release/memsched, built first if missing)
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def queue(n):
    return {"tasks": [{
        "id": f"task-{i:06d}",
        "step": ["ingest", "upload", "embed", "sync"][i % 4],
        "status": "failed",
        "attempts": 1,
        "priority": "normal",
        "created_at": f"2026-{1 + i % 12:02d}-{1 + i % 28:02d}T{i % 24:02d}:00:00Z",
        "updated_at": "2026-11-25T00:00:00Z",
        "last_error": "exit 1: connection reset by peer",
    } for i in range(n)]}


def cpu():
    """User + system seconds of every waited-for child so far."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=10000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/x86_64-unknown-linux-gnu/release/memsched"))
    args = ap.parse_args()
    if not os.path.exists(args.bin):
        subprocess.run(["cargo", "build", "--release", "--locked"], cwd=ROOT, check=True)
    walls, alone, cpus, cpus_alone, summary, groups = [], [], [], [], None, None
    loop = f'i=0; while [ $i -lt {args.tasks} ]; do /bin/true "task-$i" </dev/null; i=$((i+1)); done'
    for _ in range(args.runs):
        start, c = time.perf_counter(), cpu()
        subprocess.run(["sh", "-c", loop], check=True)
        alone.append(time.perf_counter() - start)
        cpus_alone.append(cpu() - c)
        with tempfile.TemporaryDirectory(prefix="memsched-bench-") as home:
            with open(os.path.join(home, "paths.json"), "w") as f:
                json.dump({}, f)
            with open(os.path.join(home, "task_queue.json"), "w") as f:
                json.dump(queue(args.tasks), f)
            with open(os.path.join(home, "watch-rules.toml"), "w") as f:
                f.write('[actions.retry]\ncommand = ["/bin/true", "{task_id}"]\nbreaker = { failures = 10000 }\n')
            argv = [args.bin, "--paths", os.path.join(home, "paths.json"), "--once", "--mode", "retry", "--json"]
            start, c = time.perf_counter(), cpu()
            out = subprocess.run(argv, stdout=subprocess.PIPE, check=True)
            walls.append(time.perf_counter() - start)
            cpus.append(cpu() - c)
            report = json.loads(out.stdout)["actions"][0]
            summary = report["summary"]
            groups = report["counts"]["groups"]
            with open(os.path.join(home, "task_queue.json")) as f:
                done = sum(t["status"] == "done" for t in json.load(f)["tasks"])
            assert done == args.tasks, f"{done} of {args.tasks} done"
    m, s = statistics.median(walls), statistics.median(alone)
    ratio = statistics.median(w / a for w, a in zip(walls, alone))
    cpu_ratio = statistics.median(w / a for w, a in zip(cpus, cpus_alone))
    print(f"{args.tasks} due tasks, step /bin/true, {args.runs} runs, load average {os.getloadavg()[0]:.1f}")
    print(f"memsched --once --mode retry   median {m:8.2f} s wall  (min {min(walls):.2f}), CPU {statistics.median(cpus):.2f} s")
    print(f"the step alone (sh loop)       median {s:8.2f} s wall  (min {min(alone):.2f}), CPU {statistics.median(cpus_alone):.2f} s")
    print(f"summary: {summary}; {groups} groups, so {2 * groups} writes of task_queue.json")
    print(f"ratio memsched/step alone: wall {ratio:.2f}x, CPU {cpu_ratio:.2f}x (bar: at most 2x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
