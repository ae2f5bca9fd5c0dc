#!/usr/bin/env python3
"""Reference watchdog step of the FAISS pipeline: read memsched's health summary, check
that the index matches the Data folder, and say what needs a person.

Usage: watchdog.py   (memsched runs it after writing watchdog_state.json, with
                      MEMSCHED_HEALTH set; it also runs by hand)

Beyond memsched's summary, it checks the index's two files belong together (see
store.py) and compares the memories in the index with the .txt files on disk: a memory in
the index whose file is gone is still searchable, one on disk not in the index cannot be
found. Both are normal for a moment (memsched is about to run, or holds a mass removal
back for a person to confirm) and are reported, not failed on. Reads only, under the
index's shared lock.

Exit 0 when healthy or degraded, 1 when failing or when the index cannot be read.
"""
import json
import os
import sys

import store


def memories_on_disk(data_dir):
    """Keys of the .txt files under data_dir, hidden files and folders left out (as
    memsched's default include and exclude globs do)."""
    keys = set()
    for folder, dirs, files in os.walk(data_dir):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if name.endswith(".txt") and not name.startswith("."):
                rel = os.path.relpath(os.path.join(folder, name), data_dir)
                keys.add(store.key_text(rel))
    return keys


def check_index(data_dir, index_dir):
    """(problems that fail the watchdog, notes)."""
    if not os.path.exists(os.path.join(index_dir, store.SIDECAR_FILE)):
        return [], ["no index yet"]
    try:
        with store.locked(index_dir, exclusive=False):
            meta = store.read_meta(index_dir)
            with open(os.path.join(index_dir, store.INDEX_FILE), "rb") as f:
                mismatch = store.check_pair(meta, f.read())
    except FileNotFoundError:
        mismatch = f"{store.INDEX_FILE} is missing"
    except (store.Broken, OSError) as e:
        return [str(e)], []
    notes = [f"index: {len(meta['files'])} memories, {len(meta['chunks'])} chunks, "
             f"generation {meta.get('generation')}, embedder {meta.get('embedder')}"]
    if mismatch:
        notes.append(f"index: {mismatch}; the next ingest rebuilds it (`ingest.py rebuild` now)")
    indexed, on_disk = set(meta["files"]), memories_on_disk(data_dir)
    for label, keys in (("in the index but gone from disk", indexed - on_disk),
                        ("on disk but not in the index", on_disk - indexed)):
        if keys:
            shown = ", ".join(ascii(store.key_path(k)) for k in sorted(keys)[:5])
            notes.append(f"{len(keys)} memories {label}: {shown}{', ...' if len(keys) > 5 else ''}")
    return [], notes


def main():
    state_dir = store.state_folder()
    status = os.environ.get("MEMSCHED_HEALTH", "unknown")
    try:
        with open(os.path.join(state_dir, "watchdog_state.json")) as f:
            state = json.load(f)
        status = state.get("status", status)
        problems = list(state.get("problems", []))
    except FileNotFoundError:
        print("no watchdog_state.json yet")
        problems = []
    failing, notes = check_index(*store.folders())
    print(f"pipeline health: {status}")
    for line in problems + failing:
        print(f"  - {line}")
    for line in notes:
        print(f"  {line}")
    return 1 if status == "failing" or failing else 0


if __name__ == "__main__":
    sys.exit(main())
