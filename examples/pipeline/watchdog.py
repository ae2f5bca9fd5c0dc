#!/usr/bin/env python3
"""Reference watchdog step: read memsched's health summary and say what needs a person.

Exit 0 when healthy or degraded, 1 when failing.
"""
import json
import os
import sys


def main():
    state_dir = os.environ.get("MEMSCHED_STATE_DIR", ".")
    try:
        with open(os.path.join(state_dir, "watchdog_state.json")) as f:
            state = json.load(f)
    except FileNotFoundError:
        print("no watchdog_state.json yet")
        return 0
    status = state.get("status", "unknown")
    print(f"pipeline health: {status}")
    for problem in state.get("problems", []):
        print(f"  - {problem}")
    return 1 if status == "failing" else 0


if __name__ == "__main__":
    sys.exit(main())
