#!/usr/bin/env python3
"""Benchmark: what making each batch's records durable costs a first run at scale.

Builds N new files (default 20,000, 100 bytes each, settled) and times one
`memsched --once --mode ingest --json` whose step does nothing (`true`), in batches of
B files (default 64, so N/B batches). Prints the wall time, the batches, the time per
batch, and, with strace on the PATH, how many fdatasync/fsync calls the run made and the
wall time spent in them (a second, traced run): the journal's commit should not grow with the number of batches
(issue 18 item 16).

usage: benches/journal_commit.py [--files N] [--batch B] [--bin PATH]
(default bin: target/x86_64-unknown-linux-gnu/debug/memsched, built first if missing)
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build_home(home, n, batch):
    data = os.path.join(home, "Data")
    old = time.time() - 3600
    for i in range(n):
        d = os.path.join(data, f"d{i % max(n // 100, 1):04d}")
        os.makedirs(d, exist_ok=True)
        p = os.path.join(d, f"m{i:06d}.txt")
        with open(p, "w") as f:
            f.write(f"{i:0100d}")
        os.utime(p, (old, old))
    with open(os.path.join(home, "paths.json"), "w") as f:
        json.dump({"data_dir": "Data", "state_dir": "state"}, f)
    with open(os.path.join(home, "watch-rules.toml"), "w") as f:
        f.write(f'[actions.ingest]\ncommand = ["true", "{{files}}"]\nbatch_size = {batch}\n')


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/x86_64-unknown-linux-gnu/debug/memsched"))
    args = ap.parse_args()
    if not os.path.exists(args.bin):
        subprocess.run(["cargo", "build", "--locked"], cwd=ROOT, check=True)
    # On the disk under the repository, not a tmpfs: fdatasync must cost what it costs.
    home = tempfile.mkdtemp(prefix="journal-commit-", dir=os.path.join(ROOT, "target"))
    try:
        build_home(home, args.files, args.batch)
        argv = [args.bin, "--paths", os.path.join(home, "paths.json"), "--once", "--mode", "ingest", "--json"]
        start = time.perf_counter()
        proc = subprocess.run(argv, stdout=subprocess.PIPE, check=False)
        took = time.perf_counter() - start
        record = json.loads(proc.stdout)
        counts = next(a for a in record["actions"] if a["action"] == "ingest")["counts"]
        batches = counts["batches"]
        print(f"{args.files} files, {batches} batches: {took:.2f} s, "
              f"{1000 * took / max(batches, 1):.1f} ms a batch (done {counts['done']})")
        if shutil.which("strace"):
            # Again from empty state, traced: how many syncs, and their wall time.
            shutil.rmtree(os.path.join(home, "state"), ignore_errors=True)
            trace = os.path.join(home, "strace.txt")
            subprocess.run(["strace", "-f", "-w", "-c", "-e", "trace=fdatasync,fsync", "-o", trace] + argv,
                           stdout=subprocess.DEVNULL, check=False)
            for line in open(trace):
                m = re.match(r"\s*[\d.]+\s+([\d.]+)\s+\d+\s+(\d+)\s+(?:\d+\s+)?(fdatasync|fsync)$", line)
                if m:
                    print(f"  traced: {m.group(3)} {m.group(2)} calls, {float(m.group(1)):.3f} s wall")
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
