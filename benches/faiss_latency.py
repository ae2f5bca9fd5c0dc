#!/usr/bin/env python3
"""Benchmark: save -> searchable -> uploaded on the FAISS reference pipeline (examples/faiss).

A sample writes a new memory holding a word no other memory has, closes it, and times
three things from the close: the index pair renamed into place with the word in it
(index/faiss.index replaced after index/chunks.json holds the word, see store.py's save);
the word found by a search (a searcher process that loads the index from disk and queries
it every 10 ms, as search.py does, with the embedder loaded once); and the side-car on the
drive holding the word (rclone's local backend, drive/ in the home: the upload `set` sends
the index, then the side-car last). Each tool runs the example's own scripts through the
real FAISS venv:

  memsched  `memsched --paths HOME/paths.json` with the example's watch-rules.toml,
            debounce set to --debounce, twice: with the step started per batch
            ("one-shot": `ingest.py add {files}`) and with the resident step the rules
            ship (`ingest.py --resident`, issue 19), when the binary knows it;
  watchexec `watchexec --debounce D -w Data -e txt --postpone --on-busy-update=queue
            --shell=sh -- "find Data -name '*.txt' -print0 | xargs -0 .venv/bin/python
            ingest.py add && rclone copyto index/faiss.index ... && rclone copyto
            index/chunks.json ..."` when it is installed (it cannot say which file
            changed, so the step is given every memory: each is re-embedded each time, as
            a user of a plain watcher would do);
  cron      a 10-minute cron line running `memsched --once`, computed: the wait for the
            next tick is uniform over 10 minutes (p50 300 s, p99 594 s), plus the
            measured time of `memsched --once` after one new memory (its median, and its
            slowest of --samples runs).

With --burst N, each tool in turn then gets N new memories written as fast as one process
can and one more 0.3 s later: the time from the last write until all N are searchable, the
extra save's close -> searchable, how many ingest step processes started and how many
times the index was loaded (counted by benches/faiss/sitecustomize.py, which every
Python the tools start loads through PYTHONPATH; the example is not touched), and
memsched's ingest batches (from scheduler_log.json).

Samples are interleaved between the tools (one reacts at a time) so load falls on each
alike; reported as p50 and p99 (nearest rank).

usage: benches/faiss_latency.py [--memsched LABEL=PATH]... [--samples N] [--debounce MS]
                                [--burst N] [--deadline S] [--no-cron]
needs examples/faiss/.venv (see examples/faiss/README.md) and rclone
"""
import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "faiss")


ONE_SHOT = {
    "command": '[".venv/bin/python", "ingest.py", "add", "{files}"]',
    "remove": '[".venv/bin/python", "ingest.py", "remove", "{files}"]',
}


def one_shot(rules):
    """The rules with ingest.py started per batch instead of resident."""
    out = []
    for line in rules.splitlines():
        key = line.split("=", 1)[0].strip()
        if key in ("resident", "idle_exit"):
            continue
        out.append(f"{key} = {ONE_SHOT[key]}" if key in ONE_SHOT and "--resident" in line else line)
    return "\n".join(out) + "\n"


def home_for(base, label, debounce_ms, with_remove, resident=False):
    home = os.path.join(base, label)
    os.makedirs(os.path.join(home, "Data"))
    for name in os.listdir(EXAMPLE):
        src = os.path.join(EXAMPLE, name)
        if os.path.isfile(src):
            shutil.copy(src, home)
    os.symlink(os.path.join(EXAMPLE, ".venv"), os.path.join(home, ".venv"))
    rules = open(os.path.join(home, "watch-rules.toml")).read()
    rules = rules.replace('debounce = "500ms"', f'debounce = "{debounce_ms}ms"')
    rules = rules.replace('settle = "2s"', 'settle = "0s"')
    if not resident:
        rules = one_shot(rules)
    if not with_remove:
        rules = "\n".join(l for l in rules.splitlines() if not l.startswith("remove ="))
    open(os.path.join(home, "watch-rules.toml"), "w").write(rules)
    return home


def tool_env(home):
    """The environment a tool (and the steps it starts) gets: the counting hook."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.join(ROOT, "benches", "faiss")
    env["FAISS_BENCH_COUNTS"] = os.path.join(home, "counts.txt")
    return env


def counted(home):
    """(ingest processes started, index loads) so far in `home`."""
    try:
        words = [l.split()[0] for l in open(os.path.join(home, "counts.txt"))]
    except OSError:
        return 0, 0
    return words.count("start"), words.count("load")


def index_mark(home):
    try:
        st = os.stat(os.path.join(home, "index", "faiss.index"))
        return (st.st_ino, st.st_mtime_ns)
    except OSError:
        return None


def indexed(home, word):
    return holds(os.path.join(home, "index", "chunks.json"), word)


def holds(path, word):
    try:
        with open(path) as f:
            return word in f.read()
    except (OSError, ValueError):
        return False


def sample(home, n, searcher, deadline_s=60):
    """One save: (close -> index renamed, -> found by search, -> uploaded) in ms, each
    None when it did not happen within the deadline."""
    word = f"zq{n}x{os.getpid()}w{time.time_ns()}"
    path = os.path.join(home, "Data", f"m{n}.txt")
    before = index_mark(home)
    searcher.stdin.write(f"{os.path.join(home, 'index')} {word} {deadline_s}\n")
    searcher.stdin.flush()
    with open(path, "w") as f:
        f.write(f"memory number {n} says {word}\n")
    closed = time.time()
    renamed = uploaded = None
    sidecar = os.path.join(home, "index", "chunks.json")
    drive = os.path.join(home, "drive", "index", "chunks.json")
    end = closed + deadline_s
    while (renamed is None or uploaded is None) and time.time() < end:
        now = time.time()
        if renamed is None and holds(sidecar, word) and index_mark(home) != before:
            renamed = now
        if uploaded is None and holds(drive, word):
            uploaded = now
        time.sleep(0.002)
    answer = searcher.stdout.readline().strip()
    found = None if answer == "never" else float(answer)
    ms = lambda at: None if at is None else (at - closed) * 1000
    return ms(renamed), ms(found), ms(uploaded)


def words_indexed(home, words):
    """How many of `words` the side-car holds."""
    try:
        with open(os.path.join(home, "index", "chunks.json")) as f:
            text = f.read()
    except OSError:
        return 0
    return sum(1 for w in words if w in text)


def ingest_batches(home, since):
    """Step runs (one-shot) or resident batches ingest made in runs started after `since`
    (an ISO time), from scheduler_log.json; None for a home memsched does not run."""
    try:
        runs = json.load(open(os.path.join(home, "state", "scheduler_log.json")))["runs"]
    except (OSError, ValueError, KeyError):
        return None
    total = 0
    for run in runs:
        if run.get("started_at", "") < since:
            continue
        for action in run.get("actions", []):
            if action.get("action") == "ingest":
                total += int(action.get("counts", {}).get("batches", 0) or 0)
    return total


def upload_step_ms(home):
    """The time memsched's upload steps took in each run that uploaded (all its files),
    from scheduler_log.json: the upload's own time, without memsched's part."""
    try:
        runs = json.load(open(os.path.join(home, "state", "scheduler_log.json")))["runs"]
    except (OSError, ValueError, KeyError):
        return []
    out = []
    for run in runs:
        for action in run.get("actions", []):
            if action.get("action") == "upload" and action.get("outcome") == "ran":
                ms = sum(c.get("duration_ms", 0) for c in action.get("commands", []))
                if ms:
                    out.append(ms)
    return out


def burst(home, n, deadline_s):
    """Writes `n` memories as fast as one process can, then one more 0.3 s later (a save
    made while the burst is still being ingested). Returns (last write -> all `n`
    searchable in ms, that one save's close -> searchable in ms, ingest processes started,
    index loads, memsched's ingest batches)."""
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 1))
    started, loads = counted(home)
    tag = f"b{os.getpid()}t{time.time_ns()}"
    words = [f"zq{tag}n{i}x" for i in range(n)]
    for i, word in enumerate(words):
        with open(os.path.join(home, "Data", f"burst-{tag}-{i:05d}.txt"), "w") as f:
            f.write(f"burst memory {i} says {word}\n")
    last = time.perf_counter()
    time.sleep(0.3)
    fresh = f"zq{tag}fresh"
    with open(os.path.join(home, "Data", f"fresh-{tag}.txt"), "w") as f:
        f.write(f"a fresh memory says {fresh}\n")
    fresh_closed = time.perf_counter()
    all_at = fresh_at = None
    end = last + deadline_s
    while (all_at is None or fresh_at is None) and time.perf_counter() < end:
        now = time.perf_counter()
        if fresh_at is None and indexed(home, fresh):
            fresh_at = now
        if all_at is None and words_indexed(home, words) == n:
            all_at = now
        time.sleep(0.02)
    ms = lambda at, since: None if at is None else (at - since) * 1000
    # The batches are counted once memsched has recorded its runs.
    time.sleep(1)
    now_started, now_loads = counted(home)
    return (ms(all_at, last), ms(fresh_at, fresh_closed), now_started - started,
            now_loads - loads, ingest_batches(home, since))


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, int(round(p / 100 * len(xs) + 0.5)) - 1))]


def cron_once(path, base, samples, debounce_ms, with_remove):
    """Times `memsched --once` after one new memory, `samples` times, in a home of its own
    with the one-shot step (as a cron line would run it): the run's wall time in ms."""
    home = home_for(base, "cron", debounce_ms, with_remove)
    paths = os.path.join(home, "paths.json")
    subprocess.run([path, "--paths", paths, "--once"], capture_output=True, env=tool_env(home))
    times = []
    for n in range(samples):
        word = f"zqcron{n}x{time.time_ns()}"
        with open(os.path.join(home, "Data", f"c{n}.txt"), "w") as f:
            f.write(f"cron memory {n} says {word}\n")
        start = time.perf_counter()
        subprocess.run([path, "--paths", paths, "--once"], capture_output=True, env=tool_env(home))
        times.append((time.perf_counter() - start) * 1000)
        if not holds(os.path.join(home, "drive", "index", "chunks.json"), word):
            return None
    return times


def row(label, xs, deadline):
    if xs:
        return f"{statistics.median(xs):,.0f} / {pct(xs, 99):,.0f} ms"
    return f"never within {deadline:g} s"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--memsched", action="append", default=[], metavar="LABEL=PATH")
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--debounce", type=int, default=100)
    ap.add_argument("--burst", type=int, default=0, metavar="N",
                    help="then, tool by tool, a burst of N memories and one save during it")
    ap.add_argument("--deadline", type=float, default=20, metavar="S",
                    help="a sample not searchable within S seconds counts as never")
    ap.add_argument("--no-cron", action="store_true", help="leave out the cron line's row")
    args = ap.parse_args()
    if not args.memsched:
        args.memsched = ["memsched=" + os.path.join(ROOT, "target/x86_64-unknown-linux-gnu/release/memsched")]
    if not shutil.which("rclone"):
        raise SystemExit("rclone not found: the upload goes through rclone's local backend (apt-get install rclone)")
    base = tempfile.mkdtemp(prefix="faiss-latency-")
    procs, homes, missing = [], [], []
    python = os.path.join(EXAMPLE, ".venv", "bin", "python")
    searcher = subprocess.Popen([python, os.path.join(ROOT, "benches", "faiss", "searcher.py"), EXAMPLE],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                stderr=subprocess.DEVNULL)
    first_path, first_remove = None, False
    for spec in args.memsched:
        label, path = spec.split("=", 1)
        help_text = subprocess.run([path, "--help"], capture_output=True, text=True).stdout
        with_remove = "confirm-removals" in help_text
        if first_path is None:
            first_path, first_remove, first_label = path, with_remove, label
        for resident in (False, True):
            name = label + ("-resident" if resident else "")
            home = home_for(base, name, args.debounce, with_remove, resident)
            rules = os.path.join(home, "watch-rules.toml")
            check = lambda: subprocess.run([path, "--paths", os.path.join(home, "paths.json"),
                                            "--rules", rules, "check"],
                                           capture_output=True).returncode == 0
            knows = check()
            if not knows and not resident:
                # A memsched from before upload sets (issue 19): the same files as sources.
                text = open(rules).read().replace("\nset = [", "\nsources = [")
                open(rules, "w").write(text)
                knows = check()
            if not knows:
                step = "resident step" if resident else "step per batch"
                missing.append(f"memsched {label}, {step}: its rules do not load")
                continue
            p = subprocess.Popen([path, "--paths", os.path.join(home, "paths.json")],
                                 stderr=open(os.path.join(base, name + ".err"), "w"),
                                 env=tool_env(home))
            procs.append(p)
            step = "resident step" if resident else "step per batch"
            homes.append((f"memsched {label}, {step}", home))
    wx = shutil.which("watchexec")
    if wx:
        home = home_for(base, "watchexec", args.debounce, False)
        up = lambda f: f"rclone --config rclone.conf copyto index/{f} drive:drive/index/{f}"
        # ingest.py takes memory files, never a folder (it refuses what is not a file in
        # Data), so the watcher's command lists them, as a user of a plain watcher would;
        # then the index goes up as the example's upload set sends it, side-car last.
        p = subprocess.Popen([wx, "--debounce", f"{args.debounce}ms", "-w", "Data", "-e", "txt",
                              "--postpone", "--on-busy-update=queue", "--shell=sh", "--",
                              "find Data -name '*.txt' -print0 | xargs -0 .venv/bin/python ingest.py add"
                              f" && {up('faiss.index')} && {up('chunks.json')}"],
                             cwd=home, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env=tool_env(home))
        procs.append(p)
        homes.append(("watchexec, whole folder per change", home))
    # Startup runs are not measured: memsched's has finished once it is in the log;
    # watchexec (--postpone) runs nothing until the first change.
    for label, home in homes:
        log = os.path.join(home, "state", "scheduler_log.json")
        end = time.time() + 60
        while label.startswith("memsched") and not os.path.exists(log) and time.time() < end:
            time.sleep(0.05)
    results = {label: ([], [], []) for label, _ in homes}
    cron = None
    try:
        for n in range(args.samples):
            for label, home in homes:
                for series, ms in zip(results[label], sample(home, n, searcher, args.deadline)):
                    if ms is not None:
                        series.append(ms)
                time.sleep(0.3)
        bursts = {}
        for label, home in homes if args.burst else []:
            bursts[label] = burst(home, args.burst, max(args.deadline, 120))
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(timeout=30)
        searcher.stdin.close()
        searcher.wait(timeout=30)
    if not args.no_cron and first_path:
        # Alone, once the watchers are gone: a cron line's run has the machine to itself.
        cron = cron_once(first_path, base, min(args.samples, 5), args.debounce, first_remove)
    print(f"save -> searchable -> uploaded on examples/faiss, debounce {args.debounce} ms, "
          f"{args.samples} saves each (p50 / p99), load average {os.getloadavg()[0]:.1f}\n")
    print("| | close -> index renamed | close -> found by search | close -> uploaded | n |")
    print("|---|---|---|---|---|")
    for label, (renamed, found, uploaded) in results.items():
        cells = " | ".join(row(label, xs, args.deadline) for xs in (renamed, found, uploaded))
        print(f"| {label} | {cells} | {len(renamed)} |")
    for label in missing:
        print(f"| {label} | — | — | — | 0 |")
    own = {label: upload_step_ms(home) for label, home in homes if label.startswith("memsched")}
    if cron:
        mid, slow = statistics.median(cron), max(cron)
        print(f"| cron every 10 min running `memsched {first_label} --once` (computed: the wait "
              f"for the next tick + a measured run of {mid:,.0f} ms, slowest {slow:,.0f} ms) | "
              f"{(300_000 + mid) / 1000:,.1f} / {(594_000 + slow) / 1000:,.1f} s | "
              f"{(300_000 + mid) / 1000:,.1f} / {(594_000 + slow) / 1000:,.1f} s | "
              f"{(300_000 + mid) / 1000:,.1f} / {(594_000 + slow) / 1000:,.1f} s | {len(cron)} runs |")
    if any(own.values()):
        print("\nthe upload behind the index: what memsched adds to the upload's own time\n")
        print("| | close -> uploaded minus close -> index renamed, p50 | the upload steps' own time "
              "per run (both files, from scheduler_log.json), p50 |")
        print("|---|---|---|")
        for label, times in own.items():
            renamed, _, uploaded = results[label]
            gaps = [u - r for r, u in zip(renamed, uploaded)]
            gap = f"{statistics.median(gaps):,.0f} ms" if gaps else "—"
            step = f"{statistics.median(times):,.0f} ms" if times else "—"
            print(f"| {label} | {gap} | {step} |")
    elif not args.no_cron:
        print("| cron every 10 min | the measured `--once` did not upload the new memory | | | |")
    if args.burst:
        print(f"\na burst of {args.burst} new memories, then one save 0.3 s after its last write\n")
        print("| | last write -> all searchable | the save during it: close -> searchable "
              "| ingest processes started | index loads | memsched ingest batches |")
        print("|---|---|---|---|---|---|")
        shown = lambda ms: "never" if ms is None else f"{ms:,.0f} ms"
        for label, (all_ms, fresh_ms, started, loads, batches) in bursts.items():
            print(f"| {label} | {shown(all_ms)} | {shown(fresh_ms)} | {started} | {loads} "
                  f"| {'—' if batches is None else batches} |")
    if not wx:
        print("\nwatchexec not found: install it with `cargo install watchexec-cli --locked`")
    shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
