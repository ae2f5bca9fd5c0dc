#!/usr/bin/env python3
"""Reference retry step: re-run one failed pipeline task.

Usage: retry_runner.py TASK_ID   (memsched passes the task as JSON on stdin)

An `ingest` task names its file in "file": it is sent to ingest.py again. Other steps
have nothing to redo in this example pipeline and succeed. Exit 0 means the task is done.
"""
import json
import os
import subprocess
import sys


def main(task_id):
    task = json.load(sys.stdin)
    if task.get("id") != task_id:
        print(f"stdin holds task {task.get('id')!r}, not {task_id!r}", file=sys.stderr)
        return 2
    if task.get("step") == "ingest" and task.get("file"):
        data_dir = os.environ.get("MEMSCHED_DATA_DIR", "Data")
        path = os.path.join(data_dir, task["file"])
        return subprocess.call([sys.executable, "ingest.py", path])
    print(f"task {task_id}: nothing to redo for step {task.get('step')!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
