#!/usr/bin/env python3
"""Self-test of the FAISS reference pipeline: drives ingest.py, search.py, retry_runner.py
and watchdog.py the way memsched does, in a temporary pipeline home, and checks that the
index stays exactly in step with the Data folder.

Usage: examples/faiss/.venv/bin/python examples/faiss/selftest.py [-v]
Exit 0 when every check passes, 1 otherwise (each failure is named). Needs the venv of
requirements.txt; the upload check also needs rclone, and is skipped without it.

Why: memsched's own tests use a step double, not this example; this keeps the example
honest (for CI): add, edit, remove, rename, non-UTF-8 content and names, paths outside the
data folder, concurrent ingests, a save cut short, the resident mode, the retry runner, the
watchdog and the rclone upload of watch-rules.toml.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib

HERE = os.path.dirname(os.path.abspath(__file__))
PY = sys.executable
SCRIPTS = ["embed.py", "store.py", "ingest.py", "search.py", "retry_runner.py", "watchdog.py"]
VERBOSE = "-v" in sys.argv[1:]
failures = []


def check(name, ok, detail=""):
    if ok:
        print(f"ok    {name}")
    else:
        failures.append(name)
        print(f"FAIL  {name}{': ' + detail if detail else ''}")


class Home:
    """A pipeline home in a temporary folder, with copies of the example's scripts."""

    def __init__(self, root):
        self.root = root
        self.data = os.path.join(root, "Data")
        self.index = os.path.join(root, "index")
        self.state = os.path.join(root, "state")
        for folder in (self.data, self.state):
            os.makedirs(folder)
        for name in SCRIPTS + ["paths.json", "rclone.conf", "watch-rules.toml"]:
            shutil.copy(os.path.join(HERE, name), root)
        self.result = os.path.join(root, "result.json")

    def env(self, result=True):
        env = dict(os.environ, MEMSCHED_HOME=self.root, MEMSCHED_DATA_DIR=self.data,
                   MEMSCHED_INDEX_DIR=self.index, MEMSCHED_STATE_DIR=self.state,
                   MEMSCHED_ACTION="ingest")
        env.pop("MEMSCHED_RESULT", None)
        if result:
            env["MEMSCHED_RESULT"] = self.result
        return env

    def start(self, script, *args, stdin=None, result=True):
        if result and os.path.exists(self.result):
            os.unlink(self.result)
        return subprocess.Popen([PY, script, *args], cwd=self.root, env=self.env(result),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)

    def run(self, script, *args, stdin=None, result=True):
        """(exit status, stdout, stderr, report or None)."""
        proc = self.start(script, *args, result=result)
        out, err = proc.communicate(stdin)
        out, err = out.decode(errors="replace"), err.decode(errors="replace")
        if VERBOSE:
            print(f"  $ {script} {' '.join(map(ascii, args))} -> {proc.returncode}\n{out}{err}")
        report = None
        if result and os.path.exists(self.result):
            with open(self.result) as f:
                report = json.load(f)
        return proc.returncode, out, err, report

    def write(self, rel, content):
        path = os.path.join(self.data, rel) if isinstance(rel, str) else os.path.join(
            os.fsencode(self.data), rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(content.encode() if isinstance(content, str) else content)
        return os.fsdecode(path)

    def search(self, query, k=50):
        rc, out, err, _ = self.run("search.py", query, "-k", str(k), "--json", result=False)
        if rc != 0:
            raise AssertionError(f"search.py exited {rc}: {err}")
        return json.loads(out)

    def hits(self, word):
        """Results whose text holds `word`, as (path, chunk)."""
        return [(h["path"], h["chunk"]) for h in self.search(word) if word in h["text"]]

    def sidecar(self):
        with open(os.path.join(self.index, "chunks.json")) as f:
            return json.load(f)

    def consistent(self):
        """None when faiss.index and chunks.json belong together and agree, else why not."""
        sys.path.insert(0, self.root)
        import store  # the copy in the home (the same code as the example's)

        meta = store.read_meta(self.index)
        with open(os.path.join(self.index, "faiss.index"), "rb") as f:
            blob = f.read()
        why = store.check_pair(meta, blob)
        if why:
            return why
        import faiss
        import numpy as np

        ntotal = faiss.deserialize_index(np.frombuffer(blob, dtype=np.uint8)).ntotal
        ids = [i for entry in meta["files"].values() for i in entry["ids"]]
        pairs = [(c["path"], c["chunk"]) for c in meta["chunks"].values()]
        if not ntotal == meta["ntotal"] == len(meta["chunks"]) == len(ids) == len(set(ids)):
            return f"ntotal {ntotal}, side-car ntotal {meta['ntotal']}, {len(meta['chunks'])} chunks, {len(ids)} file ids"
        if len(pairs) != len(set(pairs)):
            return "a (path, chunk) is in the index twice"
        if sorted(map(int, meta["chunks"])) != sorted(ids):
            return "the files' ids are not the chunks' ids"
        return None

    def chunks_of(self, key):
        return sorted(c["chunk"] for c in self.sidecar()["chunks"].values() if c["path"] == key)


def words(marker, n):
    """About n characters of text holding `marker` once."""
    filler = " ".join(f"filler{i}" for i in range(n // 9))
    return f"{marker} {filler}\n"


def main():
    root = tempfile.mkdtemp(prefix="faiss-selftest-")
    try:
        run_checks(Home(os.path.join(root, "home")), root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"\n{len(failures)} failed" if failures else "\nall checks passed")
    return 1 if failures else 0


def run_checks(h, root):
    # -- no index yet ------------------------------------------------------------------
    rc, out, _, _ = h.run("search.py", "anything", result=False)
    check("search without an index prints nothing found, exit 0", rc == 0 and "nothing found" in out, out)
    check("search --json without an index prints []", h.search("anything") == [])

    # -- add -------------------------------------------------------------------------------
    a = h.write("a.txt", "The heron stood on the rock. markeralpha\n")
    b = h.write("sub/b.txt", "Lentil soup with cumin. markerbravo\n")
    c = h.write("sub/deep/c.txt", "Winter tyres in the basement. markercharlie\n")
    rc, _, err, rep = h.run("ingest.py", "add", a, b, c)
    check("add: exit 0 and every file reported done",
          rc == 0 and rep == {"done": [a, b, c], "failed": []}, f"{rc} {rep} {err}")
    check("add: each memory is found", h.hits("markeralpha") == [("a.txt", 0)]
          and h.hits("markerbravo") == [("sub/b.txt", 0)]
          and h.hits("markercharlie") == [("sub/deep/c.txt", 0)])
    top = h.search("heron rock", k=1)
    check("add: the best hit of a query is its memory", top and top[0]["path"] == "a.txt", str(top))
    check("add: index and side-car agree", h.consistent() is None, str(h.consistent()))

    # -- edit: old text gone, new found, no duplicate chunks --------------------------------
    h.write("a.txt", words("markeralphanew", 1400))  # three chunks now
    rc, _, _, rep = h.run("ingest.py", "add", a)
    check("edit: re-add reports done", rc == 0 and rep == {"done": [a], "failed": []}, str(rep))
    check("edit: the old text is not found", h.hits("markeralpha") == [])
    check("edit: the new text is found once", h.hits("markeralphanew") == [("a.txt", 0)])
    check("edit: a.txt's chunks replaced, not added to", h.chunks_of("a.txt") == [0, 1, 2],
          str(h.chunks_of("a.txt")))
    h.write("a.txt", "Short again. markeralphashort\n")
    h.run("ingest.py", "add", a)
    check("edit: a file that shrank keeps no stale chunk", h.chunks_of("a.txt") == [0]
          and h.hits("markeralphanew") == [], str(h.chunks_of("a.txt")))
    rc, _, _, rep = h.run("ingest.py", "add", a)
    check("edit: adding an unchanged file again changes nothing",
          h.chunks_of("a.txt") == [0] and h.consistent() is None)

    # -- remove --------------------------------------------------------------------------
    os.unlink(b)
    rc, _, _, rep = h.run("ingest.py", "remove", b)
    check("remove: reported done", rc == 0 and rep == {"done": [b], "failed": []}, str(rep))
    check("remove: the memory is not found", h.hits("markerbravo") == [] and h.chunks_of("sub/b.txt") == [])
    rc, _, _, rep = h.run("ingest.py", "remove", b, os.path.join(h.data, "never/was.txt"))
    check("remove: paths not in the index succeed", rc == 0 and len(rep["done"]) == 2 and not rep["failed"], str(rep))

    # -- rename: new path added, old removed ------------------------------------------------
    c2 = os.path.join(h.data, "sub/deep/c2.txt")
    os.rename(c, c2)
    h.run("ingest.py", "add", c2)
    rc, _, _, rep = h.run("ingest.py", "remove", c)
    check("rename: found once, under the new path",
          rc == 0 and h.hits("markercharlie") == [("sub/deep/c2.txt", 0)], str(h.hits("markercharlie")))

    # -- non-UTF-8 content ------------------------------------------------------------------
    bad = h.write("bad.txt", b"\xff\xfe markerbad \x80\n")
    good = h.write("good.txt", "Good memory. markergood\n")
    rc, _, _, rep = h.run("ingest.py", "add", bad, good)
    failed = {f["path"]: f["error"] for f in (rep or {}).get("failed", [])}
    check("non-UTF-8: reported failed with an error, the rest done, exit 0",
          rc == 0 and rep["done"] == [good] and "UTF-8" in failed.get(bad, ""), str(rep))
    check("non-UTF-8: the good file of the batch is found", h.hits("markergood") == [("good.txt", 0)])
    rc, out, err, _ = h.run("ingest.py", "add", bad, good, result=False)
    check("without MEMSCHED_RESULT a failure exits 1 with a summary",
          rc == 1 and "1 done, 1 failed" in out, out + err)
    h.write("bad.txt", "Now it is text. markerbadfixed\n")
    h.run("ingest.py", "add", bad)
    check("non-UTF-8: fixed, the file is found", h.hits("markerbadfixed") == [("bad.txt", 0)])
    h.write("bad.txt", b"\xff broken again")
    h.run("ingest.py", "add", bad)
    check("non-UTF-8: a memory that became unreadable text leaves the index",
          h.hits("markerbadfixed") == [] and h.chunks_of("bad.txt") == [])

    # -- non-UTF-8 name -----------------------------------------------------------------------
    odd = h.write(b"caf\xe9.txt", "Odd name. markeroddname\n")
    rc, _, _, rep = h.run("ingest.py", "add", odd, good)
    check("non-UTF-8 name: indexed, left out of the report, exit 0",
          rc == 0 and rep == {"done": [good], "failed": []} and len(h.hits("markeroddname")) == 1,
          f"{rc} {rep}")
    os.unlink(odd)
    rc, _, _, _ = h.run("ingest.py", "remove", odd)
    check("non-UTF-8 name: removed", rc == 0 and h.hits("markeroddname") == [])

    # -- refused: outside the data folder ---------------------------------------------------
    outside = os.path.join(root, "outside.txt")
    with open(outside, "w") as f:
        f.write("Secret. markeroutside\n")
    link = os.path.join(h.data, "link.txt")
    os.symlink(outside, link)
    dotdot = os.path.join(h.data, "..", "..", "outside.txt")
    rc, _, _, rep = h.run("ingest.py", "add", outside, link, dotdot)
    errors = [f["error"] for f in (rep or {}).get("failed", [])]
    check("outside data_dir: every spelling refused (path, link, ..)",
          rc == 0 and len(errors) == 3 and all("outside the data folder" in e for e in errors)
          and h.hits("markeroutside") == [], str(rep))
    rc, _, _, rep = h.run("ingest.py", "remove", outside)
    check("outside data_dir: remove refused too", rep and len(rep["failed"]) == 1, str(rep))
    os.unlink(link)

    # -- files on stdin --------------------------------------------------------------------
    s1 = h.write("stdin one.txt", "Read from stdin. markerstdin\n")
    rc, _, _, rep = h.run("ingest.py", "add", "-", stdin=(s1 + "\n").encode())
    check("files on stdin (`-`)", rc == 0 and rep["done"] == [s1] and h.hits("markerstdin"), str(rep))

    # -- two ingests at once ------------------------------------------------------------------
    shared = h.write("shared.txt", words("markershared", 1000))
    groups = []
    for p in range(8):
        files = [h.write(f"race/p{p}/f{i}.txt", f"Race file {p} {i}. markerrace{p}x{i}\n") for i in range(5)]
        groups.append(files)
    procs = [h.start("ingest.py", "add", *files, shared, result=False) for files in groups]
    procs += [h.start("ingest.py", "remove", os.path.join(h.data, "race/none.txt"), result=False)]
    codes = [p.wait() for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    missing = [f"markerrace{p}x{i}" for p in range(8) for i in range(5)
               if h.hits(f"markerrace{p}x{i}") != [(f"race/p{p}/f{i}.txt", 0)]]
    check("concurrent ingests: all exit 0", codes == [0] * len(procs), str(codes))
    check("concurrent ingests: every file found once", not missing, str(missing[:5]))
    check("concurrent ingests: the shared file's chunks are there once",
          h.chunks_of("shared.txt") == [0, 1], str(h.chunks_of("shared.txt")))
    check("concurrent ingests: index and side-car agree", h.consistent() is None, str(h.consistent()))

    # -- a save cut short ------------------------------------------------------------------------
    old_index = os.path.join(root, "faiss.index.old")
    shutil.copy(os.path.join(h.index, "faiss.index"), old_index)
    late = h.write("late.txt", "Written last. markerlate\n")
    h.run("ingest.py", "add", late)
    shutil.copy(old_index, os.path.join(h.index, "faiss.index"))  # new side-car, old index
    check("cut-short save: the mismatch is detected", h.consistent() is not None)
    rc, out, err, _ = h.run("search.py", "markerlate", "--json", result=False)
    check("cut-short save: search still finds the newest memory, with a warning",
          rc == 0 and any("markerlate" in r["text"] for r in json.loads(out)) and "warning" in err, err)
    with open(os.path.join(h.index, ".faiss.index.999999.tmp"), "w") as f:
        f.write("left by a killed writer")
    h.run("ingest.py", "add", good)
    check("cut-short save: the next ingest repairs the pair and sweeps temporary files",
          h.consistent() is None and not [n for n in os.listdir(h.index) if n.endswith(".tmp")])

    # -- retry runner ------------------------------------------------------------------------------
    def retry(task):
        return h.run("retry_runner.py", task["id"], stdin=json.dumps(task).encode(), result=False)

    rc, _, err, _ = retry({"id": "ingest:../outside.txt", "step": "ingest", "file": "../../outside.txt"})
    check("retry: a task whose file is outside data_dir is refused", rc == 2 and "refused" in err
          and h.hits("markeroutside") == [], err)
    os.symlink(outside, link)
    rc, _, err, _ = retry({"id": "ingest:link.txt", "step": "ingest", "file": "link.txt"})
    check("retry: a task whose file links outside data_dir is refused", rc == 2 and "refused" in err, err)
    os.unlink(link)
    r1 = h.write("retry.txt", "Retried memory. markerretry\n")
    rc, _, err, _ = retry({"id": "ingest:retry.txt", "step": "ingest", "file": "retry.txt"})
    check("retry: an ingest task is ingested", rc == 0 and h.hits("markerretry") == [("retry.txt", 0)], err)
    rc, _, err, _ = retry({"id": "rm:retry.txt", "step": "ingest", "op": "remove", "file": "retry.txt"})
    check("retry: an \"op\": \"remove\" task removes", rc == 0 and h.hits("markerretry") == [], err)
    h.run("ingest.py", "add", r1)
    os.unlink(r1)
    rc, _, err, _ = retry({"id": "ingest:retry.txt", "step": "ingest", "file": "retry.txt"})
    check("retry: an ingest task whose file is gone removes it", rc == 0 and h.hits("markerretry") == [], err)
    rc, _, _, _ = retry({"id": "upload:1", "step": "upload"})
    check("retry: other steps have nothing to redo", rc == 0)
    rc, _, _, _ = h.run("retry_runner.py", "other-id", stdin=b'{"id": "ingest:x"}', result=False)
    check("retry: a task id that does not match is refused", rc == 2)

    # -- gone before add read it ----------------------------------------------------------------------
    rc, _, _, rep = h.run("ingest.py", "add", os.path.join(h.data, "late.txt"))
    os.unlink(late)
    rc, _, _, rep = h.run("ingest.py", "add", late)
    check("add of a gone file: failed, and its chunks dropped",
          rep and rep["failed"] and rep["failed"][0]["path"] == late and h.hits("markerlate") == [], str(rep))

    # -- resident mode ----------------------------------------------------------------------------------
    proc = h.start("ingest.py", "--resident", result=False)

    def ask(request):
        proc.stdin.write((json.dumps(request) + "\n").encode())
        proc.stdin.flush()
        return json.loads(proc.stdout.readline())

    s1 = h.write("served1.txt", words("markerserved1", 100))
    s2 = h.write("served2.txt", words("markerserved2", 100))
    a1 = ask({"id": 1, "files": [s1]})
    check("resident: a batch is answered with its id", a1 == {"id": 1, "done": [s1], "failed": []}, str(a1))
    check("resident: its file is searchable", len(h.hits("markerserved1")) == 1)
    # Another writer changes the index between two batches: the resident step loads it afresh.
    h.run("ingest.py", "add", s2)
    a2 = ask({"id": 2, "remove": [s1]})
    check("resident: a remove request is answered", a2 == {"id": 2, "done": [s1], "failed": []}, str(a2))
    check("resident: the removal went, and another writer's file stayed",
          h.hits("markerserved1") == [] and len(h.hits("markerserved2")) == 1 and h.consistent() is None)
    bad = h.write(b"served-\xff.txt", words("markerservedodd", 100))
    a3 = ask({"id": 3, "files": [bad, os.path.join(root, "outside.txt")]})
    check("resident: a done name JSON cannot spell is left out, a refused path is failed",
          a3["done"] == [] and [f["path"] for f in a3["failed"]] == [os.path.join(root, "outside.txt")],
          str(a3))
    proc.stdin.close()
    check("resident: exits 0 at EOF", proc.wait(timeout=60) == 0, proc.stderr.read().decode(errors="replace"))

    # -- watchdog --------------------------------------------------------------------------------------
    rc, out, err, _ = h.run("watchdog.py", result=False)
    check("watchdog: exit 0, and it reports the index", rc == 0 and "index:" in out, out + err)

    # -- watch-rules.toml and the rclone upload ---------------------------------------------------------
    with open(os.path.join(h.root, "watch-rules.toml"), "rb") as f:
        rules = tomllib.load(f)
    ingest = rules["actions"]["ingest"]
    check("watch-rules.toml: ingest and remove as one resident ingest.py",
          ingest.get("resident") is True
          and ingest["command"][1:] == ingest["remove"][1:] == ["ingest.py", "--resident"])
    check("watch-rules.toml: a rule runs ingest on remove",
          any("remove" in r.get("on", []) and "ingest" in r["run"] for r in rules["rules"]))
    upload = rules["actions"]["upload"]
    if shutil.which(upload["command"][0]) is None:
        print(f"skip  upload: {upload['command'][0]} is not installed")
        return
    for rel in ("index/faiss.index", "index/chunks.json"):
        path = os.path.join(h.root, rel)
        fill = {"{path}": path, "{relpath}": rel}
        fill["{remote}"] = upload["remote"].replace("{relpath}", rel)
        argv = [fill.get(a, a) for a in upload["command"]]
        proc = subprocess.run(argv, cwd=h.root, capture_output=True, text=True)
        copied = os.path.join(h.root, "drive", rel)
        same = os.path.exists(copied) and open(copied, "rb").read() == open(path, "rb").read()
        check(f"upload: {' '.join(argv[:4])} ... puts {rel} in drive/", proc.returncode == 0 and same,
              proc.stderr)


if __name__ == "__main__":
    sys.exit(main())
