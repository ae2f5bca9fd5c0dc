#!/usr/bin/env python3
"""Reference ingest step with FAISS: keeps index/ exactly in step with the Data folder.

Usage:
  ingest.py add FILE...      (re)index these memories: each file's chunks are REPLACED
  ingest.py remove FILE...   drop every chunk of these memories (memsched's `remove`
                             command: it passes the paths that are gone from disk)
  ingest.py rebuild          re-embed every stored chunk now (after a new model)
  ingest.py --resident       serve memsched's batches as a resident step (`resident =
                             true`): one JSON request per line on stdin, {"id", "files"}
                             or {"id", "remove"}, one answer per line on stdout; exits
                             at EOF. The embedder and the index are loaded once.
A FILE of `-` reads the files from stdin, one per line (`-0`: NUL-terminated, for any
name); `--` ends the options. memsched passes absolute paths.

Why per-file replace: the index is keyed by path (relative to MEMSCHED_DATA_DIR), so
adding a changed file first drops its old chunks, and removing a path drops all of them.
Edits, renames (the new path added, the old one removed), deletions and restores all
reach the index, and nothing is ever in it twice. Removing a path that is not in the
index succeeds. A path that resolves outside data_dir (links followed) is refused.

Per file: done, or failed with an error (content that is not UTF-8: its old chunks are
dropped, since the text they hold is no longer on disk; a file that cannot be read: its
old chunks stay; a file gone before `add` read it: its chunks are dropped and it is
reported failed, and the retry runner turns it into a removal). With MEMSCHED_RESULT set
the step writes {"done": [...], "failed": [{"path", "error"}]} there and exits 0; a name
JSON cannot spell (not UTF-8) is left out of the report, and if such a file failed, the
step exits 1 so memsched counts it failed. Without MEMSCHED_RESULT it prints a summary
and exits 1 if anything failed.

The load-modify-save runs under an exclusive flock on index/.lock (memsched's ingest and
the retry runner's can meet) and saves atomically: see store.py. A resident ingest.py
keeps the index it loaded between batches, and loads it again when the pair on disk is
no longer the one it last loaded or saved (another writer, `ingest.py rebuild`).
"""
import hashlib
import json
import os
import stat
import sys

import store
from embed import embed_texts

CHUNK = 500  # characters, about; chunks break between words


def chunks(text):
    current, size = [], 0
    for word in text.split():
        current.append(word)
        size += len(word) + 1
        if size >= CHUNK:
            yield " ".join(current)
            current, size = [], 0
    if current:
        yield " ".join(current)


def read_memory(path):
    """The file's bytes, refusing what is not a regular file (a FIFO would block)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"not a regular file (mode {stat.filemode(st.st_mode)})")
        parts = []
        while True:
            part = os.read(fd, 1 << 20)
            if not part:
                return b"".join(parts)
            parts.append(part)
    finally:
        os.close(fd)


def spellable(path):
    try:
        path.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def file_args(args):
    """The FILE arguments, with `-` / `-0` read from stdin."""
    files, options = [], True
    for arg in args:
        if options and arg == "--":
            options = False
        elif options and arg in ("-", "-0"):
            raw = sys.stdin.buffer.read()
            sep = b"\0" if arg == "-0" else b"\n"
            files += [os.fsdecode(p) for p in raw.split(sep) if p]
        else:
            files.append(arg)
    return files


def prepare_add(files, data_dir):
    """Read, chunk and embed outside the lock. Returns (puts, drops, done, failed, notes):
    puts key -> (texts, vectors, info); drops: keys whose chunks go; done: args done."""
    read, puts, drops, done, failed, notes = [], {}, set(), [], [], {}
    for arg in files:
        try:
            path, key = store.locate(arg, data_dir)
        except ValueError as e:
            failed.append({"path": arg, "error": str(e)})
            continue
        try:
            raw = read_memory(path)
        except FileNotFoundError:
            drops.add(key)
            failed.append({"path": arg, "error": "gone before it could be read; its chunks "
                                                  "were dropped from the index"})
            continue
        except OSError as e:
            failed.append({"path": arg, "error": f"cannot read: {e}"})
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            drops.add(key)
            failed.append({"path": arg, "error": f"not UTF-8 text ({e}); "
                                                  "its old chunks were dropped from the index"})
            continue
        read.append((arg, key, list(chunks(text)),
                     {"size": len(raw), "sha256": hashlib.sha256(raw).hexdigest(),
                      "ingested_at": store.now()}))
    # One call for the whole batch: a real model embeds a batch far faster than its parts.
    vectors = embed_texts([c for _, _, texts, _ in read for c in texts])
    at = 0
    for arg, key, texts, info in read:
        puts[key] = (texts, vectors[at:at + len(texts)], info)
        drops.discard(key)
        at += len(texts)
        done.append(arg)
        notes[arg] = f"{len(texts)} chunks"
    return puts, drops, done, failed, notes


def prepare_remove(files, data_dir):
    drops, done, failed, notes = set(), [], [], {}
    for arg in files:
        try:
            _, key = store.locate(arg, data_dir)
        except ValueError as e:
            failed.append({"path": arg, "error": str(e)})
            continue
        drops.add(key)
        done.append(arg)
        notes[arg] = "removed"
    return {}, drops, done, failed, notes


def report(done, failed, notes):
    for arg in done:
        print(f"{notes.get(arg, 'done')}: {arg!a}")
    for item in failed:
        print(f"failed {item['path']!a}: {item['error']}", file=sys.stderr)
    result = os.environ.get("MEMSCHED_RESULT")
    if not result:
        print(f"{len(done)} done, {len(failed)} failed")
        return 1 if failed else 0
    # JSON cannot spell a name that is not UTF-8 (Python holds it with lone surrogates):
    # such files are left out of the report and follow the exit status.
    with open(result, "w") as f:
        json.dump({"done": [p for p in done if spellable(p)],
                   "failed": [i for i in failed if spellable(i["path"])]}, f)
        f.flush()
        os.fsync(f.fileno())
    return 1 if any(not spellable(i["path"]) for i in failed) else 0


def on_disk(index_dir):
    """What identifies the saved pair: each file's inode, size and mtime (a save replaces
    both by rename, so any writer's save changes it)."""
    marks = []
    for name in (store.INDEX_FILE, store.SIDECAR_FILE):
        try:
            st = os.stat(os.path.join(index_dir, name))
            marks.append((st.st_ino, st.st_size, st.st_mtime_ns))
        except FileNotFoundError:
            marks.append(None)
    return tuple(marks)


def apply(index_dir, held, puts, drops):
    """One batch's changes under the lock, on the index held from the last batch when the
    pair on disk is still that one. Returns the (index, identity) to hold next."""
    os.makedirs(index_dir, exist_ok=True)
    with store.locked(index_dir, exclusive=True):
        if held is not None and held[1] == on_disk(index_dir):
            ix, repaired = held[0], None
        else:
            ix, repaired = store.load(index_dir)
            if repaired:
                print(f"rebuilt the FAISS index from {store.SIDECAR_FILE}: {repaired}", file=sys.stderr)
        gone, added = ix.replace(puts, drops)
        if gone or added or repaired:
            store.save(index_dir, ix)
        print(f"index: {gone} chunks out, {added} in, {ix.chunk_count()} in all, "
              f"generation {ix.meta['generation']}", file=sys.stderr)
        return ix, on_disk(index_dir)


def serve():
    """Resident mode: one answer line per request line, until EOF on stdin."""
    data_dir, index_dir = store.folders()
    held = None
    for line in sys.stdin:
        request = json.loads(line)
        if "remove" in request:
            puts, drops, done, failed, _ = prepare_remove(request["remove"], data_dir)
        else:
            puts, drops, done, failed, _ = prepare_add(request.get("files", []), data_dir)
        if puts or drops:
            try:
                held = apply(index_dir, held, puts, drops)
            except (OSError, ValueError, RuntimeError, store.Broken) as e:
                # Nothing of this batch reached the disk (the save is atomic), and the
                # index in memory may hold half of it: loaded afresh next time.
                held = None
                error = f"index not updated: {type(e).__name__}: {e}"
                failed += [{"path": a, "error": error} for a in done]
                done = []
        # A done name JSON cannot spell is left out (it counts as done); a failed one is
        # named, so memsched takes every file the answer does not name as failed.
        answer = {"id": request["id"], "done": [p for p in done if spellable(p)],
                  "failed": failed}
        try:
            print(json.dumps(answer), flush=True)
        except BrokenPipeError:
            return 0  # memsched is gone: nobody reads the answer, nor the next request
    return 0


def main(argv):
    if argv == ["--resident"]:
        return serve()
    if not argv or argv[0] not in ("add", "remove", "rebuild") or (argv[0] == "rebuild" and argv[1:]):
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    op, files = argv[0], file_args(argv[1:])
    data_dir, index_dir = store.folders()
    if op == "add":
        puts, drops, done, failed, notes = prepare_add(files, data_dir)
    elif op == "remove":
        puts, drops, done, failed, notes = prepare_remove(files, data_dir)
    else:
        puts, drops, done, failed, notes = {}, set(), [], [], {}
    if not puts and not drops and op != "rebuild":
        return report(done, failed, notes)
    try:
        os.makedirs(index_dir, exist_ok=True)
        with store.locked(index_dir, exclusive=True):
            ix, repaired = store.load(index_dir)
            if repaired:
                print(f"rebuilt the FAISS index from {store.SIDECAR_FILE}: {repaired}", file=sys.stderr)
            gone, added = ix.replace(puts, drops)
            if gone or added or repaired or op == "rebuild":
                store.save(index_dir, ix)
            print(f"index: {gone} chunks out, {added} in, {ix.chunk_count()} in all, "
                  f"generation {ix.meta['generation']}")
    except (OSError, ValueError, RuntimeError, store.Broken) as e:
        # Nothing of this batch reached the index (the save is atomic): all failed.
        error = f"index not updated: {type(e).__name__}: {e}"
        return max(report([], failed + [{"path": a, "error": error} for a in done], {}), 1)
    return report(done, failed, notes)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
