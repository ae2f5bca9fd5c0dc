#!/usr/bin/env python3
"""Test double for a step that talks while it works (issue 20 item 12).

usage: chatty.py GO_FILE [FILES...]

Prints "hello-out" on stdout and "hello-err" on stderr, each flushed at once, then waits
for GO_FILE to exist (at most 60 s: exit 3 if it never does) and exits 0. A test creates
GO_FILE only once it has seen the lines, which proves they were passed on while the step
still ran.
"""
import os
import sys
import time


def main(argv):
    go = argv[0]
    print("hello-out", flush=True)
    print("hello-err", file=sys.stderr, flush=True)
    deadline = time.monotonic() + 60
    while not os.path.exists(go):
        if time.monotonic() > deadline:
            print(f"chatty.py: {go} never appeared", file=sys.stderr, flush=True)
            return 3
        time.sleep(0.02)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
