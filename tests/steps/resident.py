#!/usr/bin/env python3
"""A resident ingest step for the tests (issue 19): reads one JSON request per line on
stdin, answers one JSON line on stdout, and records what it did in LOGDIR:

- starts.jsonl / exits.jsonl: one line per process started / ended at EOF (its pid);
- batches.jsonl: one line per batch (pid, id, files or remove);
- running: made with O_EXCL (holding its pid) while it lives; a second copy that finds
  it with that pid alive writes OVERLAP and exits 3 (the tests then fail loudly).

What a file holds steers it: CRASH dies mid-batch (exit 9, no answer), HANG sleeps a
minute, SLOW waits until the test makes LOGDIR/release (at most a minute), BADPATH answers with a path not in the batch, FAIL reports the
file failed. A file named in a remove request is answered done. With `--linger` it
stays after EOF, deaf to SIGTERM, until the test makes LOGDIR/let-go.
"""
import json
import os
import sys
import time

log = sys.argv[1]
os.makedirs(log, exist_ok=True)


def append(name, value):
    with open(os.path.join(log, name), "a") as f:
        f.write(json.dumps(value) + "\n")


def say(text):
    """Logs on stderr; once memsched is gone (killed), nobody reads it."""
    try:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()
    except BrokenPipeError:
        pass


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, ValueError, IndexError):
        return False


marker = os.path.join(log, "running")
while True:
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        break
    except FileExistsError:
        try:
            with open(marker) as f:
                other = int(f.read() or "0")
        except (OSError, ValueError):
            other = 0
        if other and alive(other):
            append("OVERLAP", {"pid": os.getpid(), "other": other})
            say("resident.py: another copy is running")
            sys.exit(3)
        # A copy killed (timeout, crash) left its marker: it holds nothing now.
        try:
            os.unlink(marker)
        except FileNotFoundError:
            pass
append("starts.jsonl", {"pid": os.getpid(), "t": time.time()})
say("resident.py: loaded")


def content(path):
    try:
        with open(os.fsencode(path), "rb") as f:
            return f.read()
    except OSError:
        return b""


for line in sys.stdin:
    request = json.loads(line)
    files = request.get("files", [])
    append("batches.jsonl", {"pid": os.getpid(), "id": request["id"],
                             "files": files, "remove": request.get("remove")})
    done, failed = [], []
    bad = False
    for path in files:
        text = content(path)
        if b"CRASH" in text:
            os._exit(9)
        if b"HANG" in text:
            time.sleep(60)
        if b"SLOW" in text:
            # In flight until the test says: what it checks meanwhile needs no race.
            deadline = time.monotonic() + 60
            while not os.path.exists(os.path.join(log, "release")) and time.monotonic() < deadline:
                time.sleep(0.01)
        if b"BADPATH" in text:
            bad = True
        if b"FAIL" in text:
            failed.append({"path": path, "error": "told to fail"})
        else:
            done.append(path)
    done += request.get("remove") or []
    if bad:
        done.append("/elsewhere/not-in-the-batch.txt")
    say(f"resident.py: batch {request['id']}: {len(done)} done")
    try:
        print(json.dumps({"id": request["id"], "done": done, "failed": failed}), flush=True)
    except BrokenPipeError:
        # memsched is gone: EOF on stdin comes next.
        pass

if "--linger" in sys.argv:
    # A step slow to leave after EOF (it saves a big index, say): deaf to SIGTERM until
    # the test makes LOGDIR/let-go (at most a minute).
    import signal
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    deadline = time.monotonic() + 60
    while not os.path.exists(os.path.join(log, "let-go")) and time.monotonic() < deadline:
        time.sleep(0.01)
append("exits.jsonl", {"pid": os.getpid()})
os.unlink(marker)
