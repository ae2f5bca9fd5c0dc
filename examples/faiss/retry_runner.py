#!/usr/bin/env python3
"""Reference retry step of the FAISS pipeline: re-run one failed pipeline task.

Usage: retry_runner.py TASK_ID   (memsched passes the task as JSON on stdin; run by hand
                                  with nothing on stdin, the task is read from
                                  task_queue.json in MEMSCHED_STATE_DIR)

An `ingest` task names its memory in "file" (relative to the data folder, as memsched
keys it; a name that is not UTF-8 is a NUL followed by the hex of its bytes). It is sent
to `ingest.py add` again, with this same Python (the venv's). It is sent to
`ingest.py remove` instead when the task asks for a removal (`"op": "remove"`, or a step
or kind of `remove` / `ingest-remove`), or when the file is gone from disk: the index
must not keep a memory that no longer exists. Other steps have nothing to redo in this
example and succeed. Exit 0 means the task is done.

Why the check below: task_queue.json is written by any script of the pipeline, so a
task's "file" is not trusted; one that resolves (links followed) outside the data folder
is refused (exit 2), never handed to ingest.py.
"""
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REMOVALS = {"remove", "ingest-remove"}


def read_task(task_id):
    raw = "" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.read()
    if raw.strip():
        return json.loads(raw)
    queue = os.path.join(store().state_folder(), "task_queue.json")
    try:
        with open(queue) as f:
            doc = json.load(f)
    except FileNotFoundError:
        return {}
    tasks = doc.get("tasks", []) if isinstance(doc, dict) else doc
    return next((t for t in tasks if isinstance(t, dict) and t.get("id") == task_id), {})


def store():
    """store.py, beside this script (found so from any working directory)."""
    sys.path.insert(0, HERE)
    import store as module

    return module


def main(task_id):
    task = read_task(task_id)
    if not isinstance(task, dict) or task.get("id") != task_id:
        print(f"no task {task_id!r} on stdin or in task_queue.json", file=sys.stderr)
        return 2
    step = task.get("step")
    removal = task.get("op") in REMOVALS or task.get("kind") in REMOVALS or step in REMOVALS
    if step != "ingest" and not removal:
        print(f"task {task_id}: nothing to redo for step {step!r}")
        return 0
    file = task.get("file")
    if not isinstance(file, str) or not file:
        print(f"task {task_id}: no \"file\" to {'remove' if removal else 'ingest'}", file=sys.stderr)
        return 2
    if file.startswith("\0"):
        file = os.fsdecode(bytes.fromhex(file[1:]))
    data = store().folders()[0]
    path = os.path.join(data, file)
    real_data, real = os.path.realpath(data), os.path.realpath(path)
    if real == real_data or not real.startswith(real_data.rstrip(os.sep) + os.sep):
        print(f"task {task_id}: refused: {file!a} resolves to {real!a}, outside the data "
              f"folder {real_data!a}", file=sys.stderr)
        return 2
    op = "remove" if removal or not os.path.lexists(path) else "add"
    env = dict(os.environ)
    env.pop("MEMSCHED_RESULT", None)  # ingest.py then reports by its exit status
    print(f"task {task_id}: ingest.py {op} {path!a}")
    return subprocess.call([sys.executable, os.path.join(HERE, "ingest.py"), op, "--", path], env=env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]) if len(sys.argv) == 2 else 2)
