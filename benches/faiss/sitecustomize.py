"""Counts, for benches/faiss_latency.py, what the example's steps cost: each Python process
started in a home (one line "start" per ingest.py process) and each FAISS index load
(store.load). Loaded by every Python the benchmark's tools start, through PYTHONPATH; it
does nothing unless FAISS_BENCH_COUNTS names the file to append to. The example itself is
not touched."""
import importlib.abc
import importlib.util
import os
import sys

COUNTS = os.environ.get("FAISS_BENCH_COUNTS")


def note(what):
    with open(COUNTS, "a") as f:
        f.write(f"{what} {os.getpid()}\n")


class _WrapStore(importlib.abc.MetaPathFinder):
    """Wraps store.load once the example's store module is imported."""

    def find_spec(self, name, path, target=None):
        if name != "store":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            load = module.load

            def counted_load(*args, **kwargs):
                note("load")
                return load(*args, **kwargs)

            module.load = counted_load

        spec.loader.exec_module = exec_module
        return spec


if COUNTS and os.path.basename(sys.argv[0] if sys.argv else "") == "ingest.py":
    note("start")
    sys.meta_path.insert(0, _WrapStore())
