#!/usr/bin/env python3
"""Reference ingest step: chunk text files and add them to a tiny vector index.

Usage: ingest.py FILE...            (memsched passes the batch as arguments)
       ingest.py --remove FILE...   (memsched's `remove` command: these memories are gone)

Each file is split into chunks of about CHUNK characters; each chunk gets a small
bag-of-words vector (a stand-in for a real embedding model and FAISS) and is written to
index/<digest>.json. Files that are not UTF-8 text are reported failed through
MEMSCHED_RESULT, the rest done, so memsched records exactly what was ingested.
With --remove, each gone memory's index/<digest>.json is deleted (a path never indexed
is done too), so a deleted memory is no longer searchable.
Standard library only.
"""
import hashlib
import json
import math
import os
import sys

CHUNK = 400
DIM = 64


def embed(text):
    vec = [0.0] * DIM
    for word in text.lower().split():
        vec[int(hashlib.md5(word.encode()).hexdigest(), 16) % DIM] += 1.0
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [round(v / norm, 4) for v in vec]


def chunks(text):
    words, current = text.split(), []
    for word in words:
        current.append(word)
        if sum(len(w) + 1 for w in current) >= CHUNK:
            yield " ".join(current)
            current = []
    if current:
        yield " ".join(current)


def spellable(path):
    try:
        path.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def index_name(rel):
    return hashlib.sha256(rel.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def remove(files, index_dir, data_dir):
    """Deletes the index entries of memories that are gone: (done, failed)."""
    done, failed = [], []
    for path in files:
        rel = os.path.relpath(path, data_dir)
        try:
            os.remove(os.path.join(index_dir, f"{index_name(rel)}.json"))
            print(f"removed {rel!a} from the index")
        except FileNotFoundError:
            pass
        except OSError as e:
            failed.append({"path": path, "error": f"{type(e).__name__}: {e}"})
            continue
        done.append(path)
    return done, failed


def main(args):
    index_dir = os.environ.get("MEMSCHED_INDEX_DIR", "index")
    data_dir = os.environ.get("MEMSCHED_DATA_DIR", "Data")
    os.makedirs(index_dir, exist_ok=True)
    if args[:1] == ["--remove"]:
        return report(*remove(args[1:], index_dir, data_dir))
    done, failed = [], []
    for path in args:
        try:
            with open(path, "rb") as f:
                text = f.read().decode("utf-8")
        except (OSError, UnicodeDecodeError) as e:
            failed.append({"path": path, "error": f"{type(e).__name__}: {e}"})
            continue
        rel = os.path.relpath(path, data_dir)
        entry = {
            "source": rel,
            "chunks": [{"text": c, "vector": embed(c)} for c in chunks(text)],
        }
        name = index_name(rel)
        tmp = os.path.join(index_dir, f".{name}.tmp")
        with open(tmp, "w") as f:
            json.dump(entry, f)
        os.replace(tmp, os.path.join(index_dir, f"{name}.json"))
        done.append(path)
        print(f"ingested {rel!a}: {len(entry['chunks'])} chunks")
    return report(done, failed)


def report(done, failed):
    result = os.environ.get("MEMSCHED_RESULT")
    if result:
        # JSON cannot spell a name that is not UTF-8 (Python holds it with lone
        # surrogates): such files are left out of the report and follow the exit status.
        with open(result, "w") as f:
            json.dump(
                {
                    "done": [p for p in done if spellable(p)],
                    "failed": [i for i in failed if spellable(i["path"])],
                },
                f,
            )
    for item in failed:
        print(f"failed {item['path']!a}: {item['error']}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
