#!/usr/bin/env python3
"""Reference retry step: re-run one failed pipeline task.

Usage: retry_runner.py TASK_ID   (memsched passes the task as JSON on stdin)

An `ingest` task names its file in "file", relative to data_dir: it is sent to ingest.py
again. The queue is written by every script of the pipeline, so a file that leads outside
data_dir (an absolute path elsewhere, a `..`, a link out) is refused with exit 2, never
read. Other steps have nothing to redo in this example pipeline and succeed. Exit 0 means
the task is done.
"""
import json
import os
import subprocess
import sys


def inside(data_dir, file):
    """The path of `file` under data_dir, or None when it leads outside it. A name that
    is not UTF-8 is keyed as a NUL followed by the hex of its bytes."""
    if not isinstance(file, str):
        return None
    if file.startswith("\0"):
        try:
            file = os.fsdecode(bytes.fromhex(file[1:]))
        except ValueError:
            return None
    if "\0" in file or ".." in file.split("/"):
        return None
    path = os.path.join(data_dir, file)
    root = os.path.realpath(data_dir)
    real = os.path.realpath(path)
    if os.path.commonpath([root, real]) != root:
        return None
    return path


def main(task_id):
    task = json.load(sys.stdin)
    if task.get("id") != task_id:
        print(f"stdin holds task {task.get('id')!r}, not {task_id!r}", file=sys.stderr)
        return 2
    if task.get("step") == "ingest" and task.get("file"):
        data_dir = os.environ.get("MEMSCHED_DATA_DIR", "Data")
        path = inside(data_dir, task["file"])
        if path is None:
            print(f"task {task_id}: its file {task['file']!r} is outside data_dir "
                  f"{data_dir}: not run", file=sys.stderr)
            return 2
        return subprocess.call([sys.executable, "ingest.py", path])
    print(f"task {task_id}: nothing to redo for step {task.get('step')!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
