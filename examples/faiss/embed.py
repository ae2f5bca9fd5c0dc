#!/usr/bin/env python3
"""The embedder of the FAISS reference pipeline: text in, unit-length float32 vectors out.

Usage (as a module): `from embed import embed, EMBEDDER, DIM`; `embed(["text", ...])`
returns an array of shape (len(texts), DIM). Run by hand, `embed.py TEXT...` prints the
vectors' first values (a quick look, nothing more).

Why a hashing embedder: the example must run on a fresh machine with no download, and the
same text must give the same vector on every run and every machine (the tests rely on it).
Signed feature hashing of word unigrams and bigrams (blake2b) gives exactly that: texts
that share words get a high cosine score, and nothing has to be trained or fetched. It
knows nothing of meaning ("car" and "automobile" are unrelated to it), so a real
deployment plugs a real model into the seam below.

EMBEDDER names the model that made the vectors. It is stored in index/chunks.json; when
it changes (a model was plugged in), the next `ingest.py` run re-embeds every stored chunk
from its text (`ingest.py rebuild` does it at once), so swapping models never leaves an
index of mixed vectors.
"""
import functools
import hashlib
import re
import sys

import numpy as np

EMBEDDER = "hash-blake2b-unigram-bigram-v2"  # change it with the model (see the seam)
DIM = 256

_WORD = re.compile(r"\w+")
_BIGRAM_WEIGHT = 0.5
# Words too common to tell memories apart: left out, so "the heron on the rock" is about
# herons and rocks, not about "on the".
_STOP = frozenset("""a an and are as at be but by did do does for from had has have he her
him his i if in into is it its me my no not of on or our she so than that the their them
then there these they this to up was we were what when which who will with you your""".split())


@functools.lru_cache(maxsize=1 << 16)
def _slot(feature):
    """The (dimension, sign) a feature lands on: stable across runs and machines."""
    digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8, person=b"memsched").digest()
    return int.from_bytes(digest[:4], "little") % DIM, (1.0 if digest[4] & 1 else -1.0)


def hash_embed(texts):
    """Signed feature hashing of casefolded words (weight 1) and pairs of neighbouring
    words (0.5), stop words left out, L2-normalised; a text with no word gets the zero
    vector."""
    out = np.zeros((len(texts), DIM), dtype=np.float32)
    for row, text in enumerate(texts):
        words = [w for w in (w.casefold() for w in _WORD.findall(text)) if w not in _STOP]
        features = [(w, 1.0) for w in words]
        features += [(f"{a} {b}", _BIGRAM_WEIGHT) for a, b in zip(words, words[1:])]
        for feature, weight in features:
            slot, sign = _slot(feature)
            out[row, slot] += sign * weight
    return normalise(out)


def normalise(vectors):
    """Rows scaled to unit length (inner product = cosine); zero rows stay zero."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return vectors / norms


# --- plug a real model in here ---
# embed(texts) -> np.ndarray of shape (len(texts), DIM), float32. Set EMBEDDER to a name
# that identifies the model (and its version) and DIM to its output size, e.g. for
# sentence-transformers (pip install sentence-transformers; the model downloads once):
#
#     from sentence_transformers import SentenceTransformer
#     EMBEDDER, DIM = "sentence-transformers/all-MiniLM-L6-v2", 384
#     _model = SentenceTransformer("sentence-transformers/all-MiniLM-L6-v2")
#
#     def embed(texts):
#         return _model.encode(list(texts), normalize_embeddings=True,
#                              convert_to_numpy=True).astype("float32")
#
# Every ingest run loads the model again: fine for a small one; for a large one, keep
# batches big (batch_size in watch-rules.toml).
def embed(texts):
    return hash_embed(texts)
# --- end of the seam ---


def embed_texts(texts):
    """What the steps call: embed(), checked for shape and normalised (cosine scores)."""
    texts = list(texts)
    if not texts:
        return np.zeros((0, DIM), dtype=np.float32)
    vectors = np.asarray(embed(texts), dtype=np.float32)
    if vectors.shape != (len(texts), DIM):
        raise ValueError(
            f"embed() returned shape {vectors.shape} for {len(texts)} texts; "
            f"expected ({len(texts)}, {DIM}): set DIM in embed.py to the model's size"
        )
    return normalise(vectors)


if __name__ == "__main__":
    for text, vector in zip(sys.argv[1:], embed_texts(sys.argv[1:])):
        print(f"{text[:40]!r}: {np.round(vector[:8], 3).tolist()}...")
