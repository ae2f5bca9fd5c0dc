#!/usr/bin/env python3
"""Test double for a pipeline step that adds a task to task_queue.json while memsched is
running it, following the documented protocol: flock task_queue.json.lock, re-read,
append, write a temp file, fsync, rename.

usage: append_task.py QUEUE_FILE NEW_TASK_ID
"""
import fcntl
import json
import os
import sys


def main(queue, new_id):
    with open(queue + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with open(queue) as f:
            doc = json.load(f)
        tasks = doc["tasks"] if isinstance(doc, dict) else doc
        tasks.append({"id": new_id, "step": "upload", "status": "failed", "attempts": 0,
                      "added_by": "append_task.py"})
        tmp = queue + ".tmp"
        with open(tmp, "w") as f:
            json.dump(doc, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, queue)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
