#!/usr/bin/env python3
"""Test double for a pipeline step: records exactly what it was given, then behaves as told.

usage: record.py LOGDIR [--exit N] [--sleep SECONDS] [--fail SUBSTRING]... [--fail-while FILE]
                       [--bad-result] [--result JSON] [--exclusive FILE] [--tag NAME]
                       [--hold-on SUBSTRING RELEASE] [-- ARGS...]

Each call writes LOGDIR/<ns>-<pid>.json with the arguments after `--` and stdin as hex
(byte for byte), the MEMSCHED_* environment and the working directory. --fail reports the
files whose name contains SUBSTRING as failed through MEMSCHED_RESULT; --bad-result writes
a result file that does not parse; --result writes JSON as the result file, as given;
--fail-while exits 1 while FILE exists. --exclusive FILE proves no two calls overlap: the
call holds FILE (created exclusively) while it runs and writes FILE.overlap if it was
already there. --tag NAME is recorded with the call (to tell one step's calls from another's).
--hold-on SUBSTRING RELEASE: when a file's name contains SUBSTRING, the call (once recorded)
stays in flight until RELEASE exists (at most a minute), so a test checks what happens
meanwhile without a race.
"""
import json
import os
import sys
import time


def main(argv):
    logdir, rest = argv[0], argv[1:]
    code, pause, fail, bad_result, literal, exclusive = 0, 0.0, [], False, None, None
    tag = None
    hold_on, release = None, None
    files = []
    while rest:
        arg = rest.pop(0)
        if arg == "--":
            files = rest
            break
        if arg == "--exit":
            code = int(rest.pop(0))
        elif arg == "--sleep":
            pause = float(rest.pop(0))
        elif arg == "--fail":
            fail.append(rest.pop(0))
        elif arg == "--fail-while":
            if os.path.exists(rest.pop(0)):
                code = 1
        elif arg == "--exclusive":
            exclusive = rest.pop(0)
        elif arg == "--bad-result":
            bad_result = True
        elif arg == "--result":
            literal = rest.pop(0)
        elif arg == "--tag":
            tag = rest.pop(0)
        elif arg == "--hold-on":
            hold_on, release = rest.pop(0), rest.pop(0)
        else:
            raise SystemExit(f"record.py: unknown option {arg}")
    if exclusive:
        try:
            os.close(os.open(exclusive, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            with open(exclusive + ".overlap", "a") as f:
                f.write(f"{os.getpid()}\n")
            exclusive = None
    record = {
        "args": [os.fsencode(a).hex() for a in files],
        "stdin": sys.stdin.buffer.read().hex(),
        "env": {k: v for k, v in os.environ.items() if k.startswith("MEMSCHED_")},
        "cwd": os.getcwd(),
        "pid": os.getpid(),
        "tag": tag,
    }
    os.makedirs(logdir, exist_ok=True)
    name = os.path.join(logdir, f"{time.time_ns()}-{os.getpid()}.json")
    with open(name + ".tmp", "w") as f:
        json.dump(record, f)
    os.replace(name + ".tmp", name)
    print(f"record.py: {len(files)} args")
    result = os.environ.get("MEMSCHED_RESULT")
    if result and literal is not None:
        with open(result, "w") as f:
            f.write(literal)
    elif result and bad_result:
        with open(result, "w") as f:
            f.write("{\"done\": [")
    elif result and fail:
        failed = [
            {"path": f, "error": f"refused {os.path.basename(f)}"}
            for f in files
            if any(s in f for s in fail)
        ]
        with open(result, "w") as f:
            json.dump({"failed": failed}, f)
    if pause:
        time.sleep(pause)
    if hold_on and any(hold_on in f for f in files):
        deadline = time.monotonic() + 60
        while not os.path.exists(release) and time.monotonic() < deadline:
            time.sleep(0.01)
    if exclusive:
        os.remove(exclusive)
    if code:
        print(f"record.py: exiting {code}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
