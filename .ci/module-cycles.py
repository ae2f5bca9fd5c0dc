#!/usr/bin/env python3
"""Fails, naming the cycle, when the module import graph of src/ has one.

A node is a module of the crate (one file). An edge A -> B means a `use crate::…`,
`use super::…` or an inline `crate::…` path in A names an item of module B (the
deepest module the path reaches). The graph is checked twice: module by module, and
with every module folded into its top-level module (`actions::retry` into `actions`),
since a circle between two top-level modules is the one a newcomer trips over.
`--print` prints the top-level graph (one line per module: what it uses).
"""
import re
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"


def module_of(path: Path) -> tuple:
    rel = path.relative_to(SRC).with_suffix("")
    parts = rel.parts
    if parts in (("lib",), ("main",)):
        return ()
    if parts[-1] == "mod":
        parts = parts[:-1]
    return tuple(parts)


def strip_comments_and_tests(text: str) -> str:
    # Unit tests may use anything; they are not part of the dependency graph.
    cut = re.search(r"^#\[cfg\(test\)\]\s*\nmod tests", text, re.M)
    if cut:
        text = text[: cut.start()]
    text = re.sub(r"//[^\n]*", "", text)
    return re.sub(r'"(?:\\.|[^"\\])*"', '""', text)


def expand_use(tree: str):
    """Expands `a::{b, c::d}` into ['a::b', 'a::c::d'] (one level of nesting or more)."""
    tree = tree.replace(" ", "").replace("\n", "")
    m = re.match(r"^(.*?)\{(.*)\}$", tree)
    if not m:
        return [tree]
    prefix, inner = m.groups()
    items, depth, cur = [], 0, ""
    for ch in inner:
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
            continue
        depth += ch == "{"
        depth -= ch == "}"
        cur += ch
    items.append(cur)
    out = []
    for item in filter(None, items):
        out.extend(expand_use(prefix + item))
    return out


def graph(modules: set, files: dict) -> dict:
    edges = {m: set() for m in modules}
    for mod, text in files.items():
        paths = []
        for use in re.findall(r"\buse\s+([^;]+);", text):
            paths.extend(expand_use(use))
        paths.extend(re.findall(r"\bcrate(?:::\w+)+", text))
        for p in paths:
            parts = [x for x in p.split("::") if x and x != "self"]
            if not parts:
                continue
            if parts[0] == "crate":
                target = parts[1:]
            elif parts[0] == "super":
                base = list(mod)
                while parts and parts[0] == "super":
                    base = base[:-1]
                    parts = parts[1:]
                target = base + parts
            else:
                # A child module named without prefix (`use plan::x` after `mod plan`).
                if tuple(list(mod) + parts[:1]) in modules:
                    target = list(mod) + parts
                else:
                    continue
            best = None
            for i in range(len(target), 0, -1):
                if tuple(target[:i]) in modules:
                    best = tuple(target[:i])
                    break
            if best and best != mod:
                edges[mod].add(best)
    return edges


def find_cycle(edges: dict):
    color, stack = {}, []

    def visit(n):
        color[n] = 1
        stack.append(n)
        for m in sorted(edges.get(n, ())):
            if color.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if not color.get(m):
                found = visit(m)
                if found:
                    return found
        stack.pop()
        color[n] = 2
        return None

    for n in sorted(edges):
        if not color.get(n):
            found = visit(n)
            if found:
                return found
    return None


def name(m: tuple) -> str:
    return "::".join(m) or "crate"


def main() -> int:
    files = {}
    for path in SRC.rglob("*.rs"):
        mod = module_of(path)
        if mod:
            files[mod] = strip_comments_and_tests(path.read_text())
    modules = set(files)
    fine = graph(modules, files)
    top = {}
    for m, targets in fine.items():
        top.setdefault(m[:1], set()).update(t[:1] for t in targets if t[:1] != m[:1])
    if "--print" in sys.argv:
        for m in sorted(top):
            print(f"{name(m):>12} -> {', '.join(sorted(map(name, top[m]))) or '-'}")
    status = 0
    for label, edges in (("module", fine), ("top-level module", top)):
        cycle = find_cycle(edges)
        if cycle:
            print(f"import cycle between {label}s: {' -> '.join(map(name, cycle))}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
