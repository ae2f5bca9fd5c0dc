#!/usr/bin/env python3
"""The FAISS index on disk, shared by ingest.py, search.py and watchdog.py (a module, not
a step).

Two files in index_dir, always read and written as a pair:
  faiss.index   faiss.IndexIDMap2(faiss.IndexFlatIP(DIM)): one unit vector per chunk, under
                an int64 id (inner product of unit vectors = cosine score);
  chunks.json   the side-car: id -> {"path", "chunk", "text"}, and per memory file
                (keyed by its path relative to data_dir) the ids of its chunks, its size
                and sha256. It also records the faiss index's ntotal and sha256, the
                embedder, and a generation raised by every save, so a reader can tell a
                mismatched pair.

Why this shape: the side-car holds every chunk's text, so it is the source of truth and
the FAISS index can always be rebuilt from it (a save cut short, a pair copied back from
the drive at different times, a new embedding model). A crash can leave a mismatched
pair but never a torn file, and the next load detects and repairs it.

Locking: `index/.lock`. Writers (ingest.py) hold an exclusive flock around
load-modify-save, since memsched's ingest and the retry runner's ingest can run at the
same time; readers (search.py, watchdog.py) hold a shared one. The lock file is never
deleted.

Saving: both files are written to temporary files in index_dir and fsynced; then
chunks.json replaces the old one, then faiss.index does, then the folder is fsynced.
"""
import contextlib
import datetime
import fcntl
import hashlib
import json
import os
import sys

import faiss
import numpy as np

from embed import DIM, EMBEDDER, embed_texts

HERE = os.path.dirname(os.path.abspath(__file__))
INDEX_FILE = "faiss.index"
SIDECAR_FILE = "chunks.json"
LOCK_FILE = ".lock"
VERSION = 1


class Broken(Exception):
    """The index on disk cannot be used as it is and cannot be repaired without a person."""


def _folder(env, key, default):
    """A folder of the pipeline, absolute: memsched's environment variable, else paths.json
    in MEMSCHED_HOME or beside these scripts (when run by hand)."""
    if os.environ.get(env):
        return os.path.abspath(os.environ[env])
    home = os.environ.get("MEMSCHED_HOME") or HERE
    try:
        with open(os.path.join(home, "paths.json")) as f:
            cfg = json.load(f)
    except FileNotFoundError:
        cfg = {}
    return os.path.abspath(os.path.join(home, cfg.get(key, default)))


def folders():
    """(data_dir, index_dir), absolute."""
    return (_folder("MEMSCHED_DATA_DIR", "data_dir", "Data"),
            _folder("MEMSCHED_INDEX_DIR", "index_dir", "index"))


def state_folder():
    return _folder("MEMSCHED_STATE_DIR", "state_dir", ".")


def key_text(rel):
    """How a path relative to data_dir is spelled in chunks.json: as itself when it is
    UTF-8, else a NUL followed by the hex of its bytes (memsched's own convention in
    ingest_hash.json; a NUL cannot occur in a file name, so the two never collide)."""
    try:
        rel.encode("utf-8")
        return rel
    except UnicodeEncodeError:
        return "\0" + os.fsencode(rel).hex()


def key_path(key):
    """The inverse of key_text: a relative path Python can open."""
    if key.startswith("\0"):
        return os.fsdecode(bytes.fromhex(key[1:]))
    return key


def within(path, folder):
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def locate(arg, data_dir):
    """(absolute path, key) of a memory file, or ValueError saying why it is refused.

    Refused: anything that resolves (links followed, with os.path.realpath) outside
    data_dir, and data_dir itself. The key is the path relative to data_dir as spelled
    (so it matches memsched's key); a path that reaches data_dir through another
    spelling (a link to it) is keyed by its resolved folder."""
    path = os.path.abspath(arg)
    real_data = os.path.realpath(data_dir)
    real = os.path.realpath(path)
    if not within(real, real_data):
        raise ValueError(f"refused: resolves to {real!a}, outside the data folder {real_data!a}")
    rel = os.path.relpath(path, os.path.abspath(data_dir))
    if rel == os.curdir or rel == os.pardir or rel.startswith(os.pardir + os.sep):
        parent = os.path.realpath(os.path.dirname(path))
        rel = os.path.relpath(os.path.join(parent, os.path.basename(path)), real_data)
        if rel == os.curdir or rel == os.pardir or rel.startswith(os.pardir + os.sep):
            raise ValueError(f"refused: not a file inside the data folder {real_data!a}")
    return path, key_text(rel)


@contextlib.contextmanager
def locked(index_dir, exclusive):
    """Hold index_dir/.lock: exclusive for writers, shared for readers."""
    path = os.path.join(index_dir, LOCK_FILE)
    flags = os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | flags, 0o644)
    except PermissionError:
        if exclusive:
            raise
        fd = os.open(path, os.O_RDONLY | flags)  # a reader may lack write access
    try:
        mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for {path} (another ingest holds it)", file=sys.stderr)
            fcntl.flock(fd, mode)
        yield
    finally:
        os.close(fd)


def now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


def new_faiss():
    return faiss.IndexIDMap2(faiss.IndexFlatIP(DIM))


class Index:
    """The pair in memory: `faiss` (the IndexIDMap2) and `meta` (the side-car document)."""

    def __init__(self, meta, index):
        self.meta = meta
        self.faiss = index

    @classmethod
    def empty(cls):
        meta = {
            "version": VERSION,
            "generation": 0,
            "embedder": EMBEDDER,
            "dim": DIM,
            "ntotal": 0,
            "index_file": INDEX_FILE,
            "index_sha256": None,
            "next_id": 0,
            "saved_at": None,
            "files": {},
            "chunks": {},
        }
        return cls(meta, new_faiss())

    def chunk_count(self):
        return len(self.meta["chunks"])

    def replace(self, puts, drops):
        """Replace the chunks of each file in `puts` (key -> (texts, vectors, info)) and
        drop every chunk of each key in `drops`. Old ids of a file go before its new ones
        come, so a file is never in the index twice."""
        files, chunks = self.meta["files"], self.meta["chunks"]
        old = []
        for key in set(puts) | set(drops):
            entry = files.pop(key, None)
            if entry:
                old.extend(entry["ids"])
                for i in entry["ids"]:
                    chunks.pop(str(i), None)
        if old:
            self.faiss.remove_ids(np.asarray(old, dtype=np.int64))
        new_ids, new_vectors = [], []
        for key, (texts, vectors, info) in puts.items():
            first = self.meta["next_id"]
            ids = list(range(first, first + len(texts)))
            self.meta["next_id"] = first + len(texts)
            for n, (i, text) in enumerate(zip(ids, texts)):
                chunks[str(i)] = {"path": key, "chunk": n, "text": text}
            files[key] = dict(info, ids=ids)
            new_ids.extend(ids)
            new_vectors.append(vectors)
        if new_ids:
            self.faiss.add_with_ids(np.concatenate(new_vectors), np.asarray(new_ids, dtype=np.int64))
        return len(old), len(new_ids)

    def rebuild(self):
        """A new FAISS index from the side-car's texts, with this embed.py."""
        ids = sorted(int(i) for i in self.meta["chunks"])
        vectors = embed_texts([self.meta["chunks"][str(i)]["text"] for i in ids])
        self.faiss = new_faiss()
        if ids:
            self.faiss.add_with_ids(vectors, np.asarray(ids, dtype=np.int64))
        self.meta["embedder"], self.meta["dim"] = EMBEDDER, DIM

    def search(self, vector, k):
        """[(score, chunk record)] best first, at most k."""
        if self.faiss.ntotal == 0 or k <= 0:
            return []
        scores, ids = self.faiss.search(vector.reshape(1, -1), min(k, self.faiss.ntotal))
        out = []
        for score, i in zip(scores[0], ids[0]):
            record = self.meta["chunks"].get(str(int(i))) if i >= 0 else None
            if record is not None:
                out.append((float(score), record))
        return out


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def check_pair(meta, blob):
    """None when faiss.index (blob) belongs to this side-car and this embed.py, else a
    sentence saying why not."""
    if blob is None:
        return f"{INDEX_FILE} is missing"
    if hashlib.sha256(blob).hexdigest() != meta.get("index_sha256"):
        return (f"{INDEX_FILE} is not the one {SIDECAR_FILE} (generation {meta.get('generation')}) "
                f"was saved with: a save was cut short, or the two come from different copies")
    if (meta.get("embedder"), meta.get("dim")) != (EMBEDDER, DIM):
        return (f"the index was embedded with {meta.get('embedder')} ({meta.get('dim')} dims); "
                f"embed.py is now {EMBEDDER} ({DIM} dims)")
    return None


def read_meta(index_dir):
    """The side-car document, None when there is none yet; Broken when it cannot be read."""
    path = os.path.join(index_dir, SIDECAR_FILE)
    raw = _read(path)
    if raw is None:
        return None
    try:
        meta = json.loads(raw)
    except ValueError as e:
        raise Broken(f"{path} does not parse ({e}); it was not written by this ingest.py, "
                     f"or the disk is damaged: move index/ away and re-ingest every memory") from e
    if not isinstance(meta, dict) or meta.get("version") != VERSION or not isinstance(
        meta.get("chunks"), dict) or not isinstance(meta.get("files"), dict):
        raise Broken(f"{path} is not a version {VERSION} side-car of this ingest.py")
    return meta


def load(index_dir):
    """(Index, note). `note` is None when the pair on disk was consistent; otherwise it
    says why the FAISS index was rebuilt from the side-car's texts (in memory: a writer
    saves the repair, a reader only uses it). Call under locked()."""
    meta = read_meta(index_dir)
    blob = _read(os.path.join(index_dir, INDEX_FILE))
    if meta is None:
        if blob is not None:
            raise Broken(
                f"{os.path.join(index_dir, INDEX_FILE)} exists without its side-car "
                f"{SIDECAR_FILE}, so its vectors cannot be mapped to memories: move index/ away "
                f"and re-ingest every memory (memsched: delete state/ingest_hash.json too)")
        return Index.empty(), None
    note = check_pair(meta, blob)
    if note is None:
        index = faiss.deserialize_index(np.frombuffer(blob, dtype=np.uint8))
        if index.ntotal != meta.get("ntotal") or index.ntotal != len(meta["chunks"]):
            note = (f"{INDEX_FILE} holds {index.ntotal} vectors, {SIDECAR_FILE} "
                    f"{len(meta['chunks'])} chunks (ntotal {meta.get('ntotal')})")
        else:
            return Index(meta, index), None
    ix = Index(meta, None)
    ix.rebuild()
    return ix, note


def _write_temp(folder, name, data):
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    return tmp


def sweep(index_dir):
    """Remove temporary files a killed writer left (call with the exclusive lock held:
    then no writer is mid-save)."""
    for name in os.listdir(index_dir):
        if name.startswith((f".{INDEX_FILE}.", f".{SIDECAR_FILE}.")) and name.endswith(".tmp"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(index_dir, name))


def save(index_dir, ix):
    """Write the pair atomically (see the module's docstring). Call under locked(exclusive)."""
    blob = faiss.serialize_index(ix.faiss).tobytes()
    meta = ix.meta
    meta["generation"] = int(meta.get("generation", 0)) + 1
    meta.update(ntotal=int(ix.faiss.ntotal), index_file=INDEX_FILE,
                index_sha256=hashlib.sha256(blob).hexdigest(), saved_at=now(),
                embedder=EMBEDDER, dim=DIM)
    meta["chunks"] = dict(sorted(meta["chunks"].items(), key=lambda kv: int(kv[0])))
    meta["files"] = dict(sorted(meta["files"].items()))
    side = json.dumps(meta, ensure_ascii=False, indent=1).encode("utf-8") + b"\n"
    sweep(index_dir)
    temps = []
    try:
        temps.append(_write_temp(index_dir, SIDECAR_FILE, side))
        temps.append(_write_temp(index_dir, INDEX_FILE, blob))
        # The side-car first: if a crash falls between the two renames, the side-car is
        # the newer one, and the next load rebuilds the index from its texts.
        os.replace(temps[0], os.path.join(index_dir, SIDECAR_FILE))
        os.replace(temps[1], os.path.join(index_dir, INDEX_FILE))
        temps = []
        fd = os.open(index_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    finally:
        for tmp in temps:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
