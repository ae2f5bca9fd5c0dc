#!/usr/bin/env python3
"""Benchmark: instructions, not seconds, for the runs a cron user pays, two builds side by side.

On these shared machines a wall-clock ratio of the same binary moves by half between runs
(1.18x to 1.80x `find` within an hour); `valgrind --tool=callgrind` counts the instructions
a run executes, the same for the same binary and tree whatever else the machine does. For
each build it makes benches/ingest_noop.py's tree of N files in a home of its own and
counts:
  no-op:  `--once --mode ingest` after one run recorded the tree (reading the manifest,
          walking, comparing stats: the whole cost of an unchanged cron run);
  hash:   `--once --mode ingest --dry-run` on empty state (the walk and hashing every file).

usage: benches/noop_instructions.py BEFORE AFTER [--files N]   (default 10000; needs valgrind)
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ingest_noop import build_tree  # noqa: E402


def instructions(binary, files, empty):
    home = tempfile.mkdtemp(prefix="memsched-instr-", dir=os.environ.get("TMPDIR", "/dev/shm"))
    build_tree(home, files)
    paths = os.path.join(home, "paths.json")
    base = [binary, "--paths", paths, "--once", "--mode", "ingest"]
    if not empty:
        subprocess.run(base, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    run = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"] + base
        + (["--dry-run"] if empty else ["--json"]),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    found = re.search(r"Collected : (\d+)", run.stderr)
    if not found:
        sys.exit(f"valgrind gave no count:\n{run.stderr[-2000:]}")
    return int(found.group(1))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--files", type=int, default=10000)
    args = parser.parse_args()
    print(f"{args.files} files of 4 KiB; instructions (callgrind), before = {args.before}, after = {args.after}")
    for label, empty in (("no-op, state recorded", False), ("walk + hash, empty state", True)):
        before = instructions(args.before, args.files, empty)
        after = instructions(args.after, args.files, empty)
        print(f"{label:26} before {before:>15,}  after {after:>15,}  ratio {after / before:.3f}")


if __name__ == "__main__":
    main()
