#!/usr/bin/env python3
"""Search the memories ingest.py indexed.

Usage: search.py QUERY [-k N] [--json]
  -k N     at most N chunks (default 5)
  --json   print a JSON list of {"path", "chunk", "score", "text"}, best first
           (path relative to the data folder; [] when nothing matches)

Run it by hand, from anywhere: `examples/faiss/.venv/bin/python examples/faiss/search.py
"lentil soup"`. The index is found through MEMSCHED_INDEX_DIR, else paths.json beside this
script. It reads the index under a shared flock on index/.lock, so it never sees a save
half done; a pair on disk that does not match (a save cut short, a new embedding model)
is rebuilt in memory from the side-car's texts, with a warning. No index yet is not an
error: it prints that nothing was found and exits 0. Only chunks scoring above 0 are
shown (a score is the cosine of the query's vector and the chunk's).
"""
import argparse
import json
import os
import sys

import store
from embed import embed_texts


def main(argv):
    parser = argparse.ArgumentParser(prog="search.py", description="Search the indexed memories.")
    parser.add_argument("query")
    parser.add_argument("-k", type=int, default=5, metavar="N", help="at most N chunks (5)")
    parser.add_argument("--json", action="store_true", help="print a JSON list")
    args = parser.parse_args(argv)

    _, index_dir = store.folders()
    hits = []
    if os.path.exists(os.path.join(index_dir, store.SIDECAR_FILE)) or os.path.exists(
            os.path.join(index_dir, store.INDEX_FILE)):
        try:
            with store.locked(index_dir, exclusive=False):
                ix, repaired = store.load(index_dir)
        except store.Broken as e:
            print(f"search.py: {e}", file=sys.stderr)
            return 1
        if repaired:
            print(f"search.py: warning: {repaired}; rebuilt in memory "
                  f"(`ingest.py rebuild` saves it)", file=sys.stderr)
        hits = [(s, r) for s, r in ix.search(embed_texts([args.query])[0], args.k) if s > 0]

    if args.json:
        json.dump([{"path": r["path"], "chunk": r["chunk"], "score": round(s, 6), "text": r["text"]}
                   for s, r in hits], sys.stdout, ensure_ascii=False, indent=1)
        print()
        return 0
    if not hits:
        print("nothing found")
        return 0
    for rank, (score, record) in enumerate(hits, 1):
        key = record["path"]  # a name that is not UTF-8 is shown escaped
        shown = ascii(store.key_path(key)) if key.startswith("\0") else key
        print(f"{rank}. {score:.3f}  {shown}  (chunk {record['chunk']})")
        print(f"   {record['text']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
