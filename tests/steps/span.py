#!/usr/bin/env python3
"""Test double for a slow step: records when it ran, to show which calls overlapped.

usage: span.py LOGDIR SECONDS [ARGS...]

Each call sleeps SECONDS and writes LOGDIR/<ns>-<pid>.json with its arguments and its
start and end (wall-clock seconds, comparable across processes).
"""
import json
import os
import sys
import time


def main(argv):
    logdir, pause, args = argv[0], float(argv[1]), argv[2:]
    start = time.time()
    time.sleep(pause)
    end = time.time()
    os.makedirs(logdir, exist_ok=True)
    name = os.path.join(logdir, f"{time.time_ns()}-{os.getpid()}.json")
    with open(name + ".tmp", "w") as f:
        json.dump({"args": args, "start": start, "end": end}, f)
    os.replace(name + ".tmp", name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
