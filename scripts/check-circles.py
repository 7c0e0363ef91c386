#!/usr/bin/env python3
"""Fails when a Rust file imports a file that imports it back, within a crate.

For every crate root of the workspace (lib, main, integration tests,
examples, benches), the module tree is followed through `mod name;`
declarations to its files. Each `use` and each path in the code that starts
with `crate::`, `super::` or `self::` is resolved, as far as module files
go, to the file that defines it: `crate::limiter::state::State` names
`src/limiter/state.rs`; `super::Decision` from `src/limiter/token_bucket.rs`
names `src/limiter/mod.rs` (an item of that module, even if `mod.rs` only
re-exports it). An edge A -> B means "A names something of B". Any cycle
among files (A -> B -> A, or longer) is a circle: it is printed with the
lines that make it, and the script exits 1.

Inline modules (`mod tests { ... }`) belong to their file; a `super::`
inside them counts from the inline module, so a test module's
`use super::*` names its own file (no edge).

    python3 scripts/check-circles.py            # the whole workspace
    python3 scripts/check-circles.py --verbose  # also list every edge
"""

import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MOD_DECL = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+([A-Za-z_][A-Za-z0-9_]*)\s*;")
INLINE_MOD = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+([A-Za-z_][A-Za-z0-9_]*)\s*\{")
PATH_ATTR = re.compile(r'#\[path\s*=\s*"([^"]+)"\]')
USE_START = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?use\s+")
# A path in code: crate::a::b, super::super::x, self::y, child::z.
CODE_PATH = re.compile(r"(?<![A-Za-z0-9_:])([a-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)+)")


def strip_comments(text):
    """Removes // and /* */ comments and string literals (kept as "")."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    if text[i] == "\n":
                        out.append("\n")
                    i += 1
        elif c == '"' or (c == "r" and re.match(r'r#*"', text[i:i + 8]) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_"))):
            if c == "r":
                m = re.match(r'r(#*)"', text[i:])
                hashes = m.group(1)
                end = text.find('"' + hashes, i + len(m.group(0)))
                end = n if end < 0 else end + 1 + len(hashes)
            else:
                j = i + 1
                while j < n and text[j] != '"':
                    j += 2 if text[j] == "\\" else 1
                end = j + 1
            out.append('""' + "\n" * text.count("\n", i, end))
            i = end
        elif c == "'" and re.match(r"'(\\.|[^\\'])'", text[i:i + 4]):
            m = re.match(r"'(\\.|[^\\'])'", text[i:i + 4])
            out.append("' '")
            i += len(m.group(0))
        else:
            out.append(c)
            i += 1
    return "".join(out)


def use_trees(stmt):
    """Expands `use a::{b, c::{d, e as f}}` into ['a::b', 'a::c::d', 'a::c::e']."""
    stmt = re.sub(r"\s+as\s+[A-Za-z_][A-Za-z0-9_]*", "", stmt)
    stmt = re.sub(r"\s+", "", stmt)

    def expand(s):
        brace = s.find("{")
        if brace < 0:
            return [s]
        prefix = s[:brace]
        inner = s[brace + 1:s.rfind("}")]
        parts, depth, cur = [], 0, ""
        for ch in inner:
            if ch == "," and depth == 0:
                parts.append(cur)
                cur = ""
                continue
            depth += ch == "{"
            depth -= ch == "}"
            cur += ch
        parts.append(cur)
        return [prefix + e for p in parts if p for e in expand(p)]

    return expand(stmt)


class Crate:
    def __init__(self, name, root_file):
        self.name = name
        self.root = root_file
        self.files = {}  # module path tuple -> file
        self.modules_of = {}  # file -> module path tuple
        self.walk(root_file, ())

    def walk(self, path, modpath):
        if not os.path.exists(path) or path in self.modules_of:
            return
        self.files[modpath] = path
        self.modules_of[path] = modpath
        with open(path, encoding="utf-8") as f:
            text = strip_comments(f.read())
        base = os.path.dirname(path)
        stem = os.path.splitext(os.path.basename(path))[0]
        is_dir_owner = path == self.root or stem == "mod"
        child_dir = base if is_dir_owner else os.path.join(base, stem)
        pending_path = None
        depth_stack = []  # inline module nesting: (name, brace depth at open)
        depth = 0
        for line in text.split("\n"):
            m = PATH_ATTR.search(line)
            if m:
                pending_path = m.group(1)
            m = MOD_DECL.match(line)
            if m and not depth_stack:
                name = m.group(1)
                if pending_path:
                    child = os.path.normpath(os.path.join(base, pending_path))
                else:
                    child = os.path.join(child_dir, name + ".rs")
                    if not os.path.exists(child):
                        child = os.path.join(child_dir, name, "mod.rs")
                self.walk(child, modpath + (name,))
                pending_path = None
            elif m:
                pending_path = None
            depth += line.count("{") - line.count("}")

    def resolve(self, from_file, inline_depth, path):
        """The file a `crate::`/`super::`/`self::` path names (or None)."""
        segs = path.split("::")
        here = list(self.modules_of[from_file])
        if segs[0] == "crate":
            cur, segs = [], segs[1:]
        elif segs[0] in ("super", "self"):
            cur = here + ["<inline>"] * inline_depth
            while segs and segs[0] in ("super", "self"):
                if segs[0] == "super":
                    if not cur:
                        return None
                    cur.pop()
                segs = segs[1:]
        elif tuple(here) + (segs[0],) in self.files and inline_depth == 0:
            cur = here  # a child module, named relative to this one
        else:
            return None
        if "<inline>" in cur:
            return from_file  # inside this file's own inline modules
        cur = tuple(cur)
        for s in segs:
            if cur + (s,) in self.files:
                cur = cur + (s,)
            else:
                break
        return self.files.get(cur)

    def edges(self):
        out = {}
        for f in self.modules_of:
            with open(f, encoding="utf-8") as fh:
                text = strip_comments(fh.read())
            inline = []  # brace depth at which each inline module opened
            depth = 0
            stmt = None
            for lineno, line in enumerate(text.split("\n"), 1):
                if stmt is None and USE_START.match(line):
                    stmt = (lineno, "")
                if stmt is not None:
                    stmt = (stmt[0], stmt[1] + " " + line)
                    if ";" in line:
                        body = USE_START.sub("", stmt[1].split(";")[0], count=1).strip()
                        for p in use_trees(body):
                            self.add(out, f, len(inline), p, stmt[0])
                        stmt = None
                else:
                    for m in CODE_PATH.finditer(line):
                        self.add(out, f, len(inline), m.group(1), lineno)
                if INLINE_MOD.match(line):
                    inline.append(depth)
                depth += line.count("{") - line.count("}")
                while inline and depth <= inline[-1]:
                    inline.pop()
        return out

    def add(self, out, f, inline_depth, path, lineno):
        path = re.sub(r"::\*$", "", path)
        target = self.resolve(f, inline_depth, path)
        if target and target != f:
            out.setdefault(f, {}).setdefault(target, []).append((lineno, path))


def crate_roots():
    roots = []
    for top, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in ("target", ".git", "node_modules", "fuzz")]
        if "Cargo.toml" not in files:
            continue
        for rel in ("src/lib.rs", "src/main.rs"):
            p = os.path.join(top, rel)
            if os.path.exists(p):
                roots.append(p)
        for sub in ("tests", "examples", "benches", "src/bin"):
            d = os.path.join(top, sub)
            if os.path.isdir(d):
                for name in sorted(os.listdir(d)):
                    p = os.path.join(d, name)
                    if name.endswith(".rs"):
                        roots.append(p)
                    elif os.path.exists(os.path.join(p, "main.rs")):
                        roots.append(os.path.join(p, "main.rs"))
    return sorted(roots)


def cycles(graph):
    """Strongly connected components with more than one file (Tarjan)."""
    index, low, stack, on, comps = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in list(graph):
        if v not in index:
            visit(v)
    return comps


def main():
    verbose = "--verbose" in sys.argv
    rel = lambda p: os.path.relpath(p, ROOT)
    found = 0
    checked = 0
    for root in crate_roots():
        crate = Crate(rel(root), root)
        graph = crate.edges()
        checked += len(crate.modules_of)
        if verbose:
            for a, targets in sorted(graph.items()):
                for b in sorted(targets):
                    print(f"{rel(a)} -> {rel(b)}")
        for comp in cycles(graph):
            found += 1
            print(f"circle in crate {rel(root)}:")
            members = set(comp)
            for a in comp:
                for b, sites in sorted(graph.get(a, {}).items()):
                    if b in members:
                        line, path = sites[0]
                        print(f"  {rel(a)}:{line} -> {rel(b)}  ({path})")
    if found:
        print(f"check-circles: {found} circle(s) among imports (a file must not import a file that imports it back)")
        return 1
    print(f"check-circles: no circles ({checked} module files in {len(crate_roots())} crate roots)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
