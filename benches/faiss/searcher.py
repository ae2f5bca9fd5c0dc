"""Searches like a user, for benches/faiss_latency.py: reads "INDEX_DIR WORD DEADLINE_S"
lines on stdin and, for each, loads the index from disk (under its shared lock, as
search.py does) and searches for WORD every 10 ms until a hit's text holds it; answers
with the wall-clock time it was found (time.time()), or "never". The embedder is loaded
once, so each look costs a load of the index and one query, not a Python start."""
import os
import sys
import time

sys.path.insert(0, sys.argv[1])  # examples/faiss
import store  # noqa: E402
from embed import embed_texts  # noqa: E402


def found(index_dir, word, vector):
    if not os.path.exists(os.path.join(index_dir, store.INDEX_FILE)):
        return False
    try:
        with store.locked(index_dir, exclusive=False):
            ix, _ = store.load(index_dir)
    except (OSError, ValueError, RuntimeError, store.Broken):
        return False
    return any(word in r["text"] for s, r in ix.search(vector, 20) if s > 0)


for line in sys.stdin:
    index_dir, word, deadline = line.split()
    vector = embed_texts([word])[0]
    end = time.time() + float(deadline)
    at = None
    while time.time() < end:
        if found(index_dir, word, vector):
            at = time.time()
            break
        time.sleep(0.01)
    print("never" if at is None else repr(at), flush=True)
