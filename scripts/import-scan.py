#!/usr/bin/env python3
"""Import scan: data flows one way between the modules of each crate.

Reads every crate's `mod` declarations (from src/lib.rs, src/main.rs and
src/bin/*.rs of the main crate, cli/ and crates/*) and the paths its files
name (`use crate::...`, `crate::`, `super::`, a child module's name), and
builds the graph of which module imports which. A module is a file, except
that a folder is one floor: src/node/mod.rs and every file under src/node/
together are the floor `node/`. Comments and string literals are skipped,
and so are the bodies of `#[cfg(test)]` modules: a file's unit tests may
use what is above it to check what a client finally sees.

It fails, printing the arrows, when
  - two or more modules of a crate import each other, directly or around a
    cycle: each cycle's modules, then every arrow between them with the
    line and the names that tie them;
  - a file in src/store/, src/wal/, src/root/ or src/registry/ (the data
    and what keeps it) imports from src/node/, src/http/ or src/startup.rs
    (what serves it).

Usage: scripts/import-scan.py [--graph] [REPOSITORY]
  --graph     also print every arrow between modules, one a line
  REPOSITORY  the checkout to scan (default: the one holding this script)
Exit status: 0 when nothing was found, 1 otherwise.
"""

import re
import sys
from pathlib import Path

# Folders of the main crate that hold data, and what they may not import.
LOWER = ("store", "wal", "root", "registry")
UPPER = ("node", "http", "startup")

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
MOD_DECL = re.compile(
    r"(?:\bpub\s*(?:\([^)]*\))?\s*)?\bmod\s+(" + IDENT + r")\s*([;{])"
)
USE = re.compile(r"\buse\s+([^;]*);")
PATH = re.compile(r"(?<![A-Za-z0-9_:])(" + IDENT + r"(?:\s*::\s*" + IDENT + r")+)")
KEYWORDS = {"crate", "super", "self"}
# Most cycles printed for one group of modules tied together.
SHOWN = 12


def ident_before(text, i):
    return i > 0 and (text[i - 1].isalnum() or text[i - 1] == "_")


def blank(text):
    """`text` with comments, string and character literals replaced by
    spaces (newlines kept, so that offsets still give line numbers)."""
    out = list(text)
    i, n = 0, len(text)
    raw_string = re.compile(r'b?r(#*)"')

    def wipe(a, b):
        for k in range(a, b):
            if out[k] != "\n":
                out[k] = " "

    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            wipe(i, j)
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            wipe(i, j)
            i = j
        elif c in "br" and raw_string.match(text, i) and not ident_before(text, i):
            m = raw_string.match(text, i)
            end = '"' + m.group(1)
            j = text.find(end, m.end())
            j = n if j < 0 else j + len(end)
            wipe(i, j)
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            wipe(i, j + 1)
            i = j + 1
        elif c == "'":
            m = re.match(r"'(?:\\.[^']*|[^'\\])'", text[i:])
            if m:
                wipe(i, i + m.end())
                i += m.end()
            else:
                i += 1  # a lifetime
        else:
            i += 1
    return "".join(out)


class Crate:
    """One crate: its files, its module tree, and the modules' files."""

    def __init__(self, repo, root):
        self.repo = repo
        self.src = root.parent if root.parent.name != "bin" else root.parent.parent
        self.modules = {(): root}  # module path -> file holding it
        self.files = {}  # file -> (module path, blanked text)
        self._load(root, ())

    def _load(self, path, module):
        text = blank(path.read_text(encoding="utf-8"))
        self.files[path] = (module, text)
        if path.name in ("lib.rs", "main.rs", "mod.rs") or path.parent.name == "bin":
            folder = path.parent
        else:
            folder = path.parent / path.stem
        for inner, m in inline_modules(text):
            if m.group(2) == "{":
                self.modules[module + inner + (m.group(1),)] = path
            elif not inner:
                child = module + (m.group(1),)
                for candidate in (folder / (m.group(1) + ".rs"), folder / m.group(1) / "mod.rs"):
                    if candidate.exists():
                        self.modules[child] = candidate
                        self._load(candidate, child)
                        break

    def unit(self, module):
        """The module's unit in the graph: a file, or a folder's floor."""
        if not module:
            return self.name(self.modules[()])
        top = self.modules[module[:1]]
        if top.name == "mod.rs":
            return self.name(top.parent) + "/"
        return self.name(top)

    def name(self, path):
        return path.relative_to(self.repo).as_posix()

    def resolve(self, segments, here):
        """The module a path written in module `here` reaches, or None."""
        first = segments[0]
        if first == "crate":
            at, rest = (), segments[1:]
        elif first in ("super", "self"):
            at, rest = here, segments
            while rest and rest[0] in ("super", "self"):
                if rest[0] == "super":
                    if not at:
                        return None
                    at = at[:-1]
                rest = rest[1:]
        elif here + (first,) in self.modules:
            at, rest = here, segments
        else:
            return None
        for segment in rest:
            if at + (segment,) not in self.modules:
                break
            at = at + (segment,)
        return at


def inline_modules(text):
    """Each `mod` declaration with the inline modules it sits in."""
    opens = []  # (brace depth at which an inline module's body starts, name)
    depth, at = 0, 0
    decls = list(MOD_DECL.finditer(text))
    for m in decls:
        for c in text[at : m.start()]:
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                while opens and opens[-1][0] > depth:
                    opens.pop()
        at = m.end()
        yield tuple(name for _, name in opens), m
        if m.group(2) == "{":
            depth += 1
            opens.append((depth, m.group(1)))


def inline_at(text):
    """A function from an offset of `text` to the inline modules it is in."""
    spans = []  # (start, end, inner path)
    stack = []
    depth = 0
    decl = {m.end() - 1: m.group(1) for m in MOD_DECL.finditer(text) if m.group(2) == "{"}
    for i, c in enumerate(text):
        if c == "{":
            depth += 1
            if i in decl:
                stack.append((depth, decl[i], i))
        elif c == "}":
            if stack and stack[-1][0] == depth:
                _, name, start = stack.pop()
                spans.append((start, i, tuple(n for _, n, _ in stack) + (name,)))
            depth -= 1

    def at(offset):
        best = ()
        for start, end, inner in spans:
            if start < offset < end and len(inner) > len(best):
                best = inner
        return best

    return at


def use_paths(tree):
    """The paths a `use` tree names: `a::{b, c::d}` gives a::b and a::c::d."""
    tree = re.sub(r"\s+as\s+" + IDENT, "", tree)  # `x as y` names x
    tree = re.sub(r"\s+", "", tree)
    out = []

    def walk(prefix, part):
        part = part.strip(":")
        brace = part.find("{")
        if brace < 0:
            if part and part != "*":
                out.append(prefix + [p for p in part.split("::") if p])
            elif part == "*":
                out.append(prefix)
            return
        head = [p for p in part[:brace].split("::") if p]
        body = part[brace + 1 : part.rindex("}")]
        items, level, start = [], 0, 0
        for k, c in enumerate(body):
            if c == "{":
                level += 1
            elif c == "}":
                level -= 1
            elif c == "," and level == 0:
                items.append(body[start:k])
                start = k + 1
        items.append(body[start:])
        for item in items:
            if item:
                walk(prefix + head, item)

    walk([], tree)
    return [[p for p in path if p != "self"] or ["self"] for path in out if path]


TEST_MODULE = re.compile(r"#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+" + IDENT + r"\s*\{")


def without_tests(text):
    """`text` with the bodies of its `#[cfg(test)]` modules blanked (line
    breaks kept): a file's unit tests may reach up to check what a client
    finally sees; they are not part of the node that is built."""
    out = list(text)
    for m in TEST_MODULE.finditer(text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        for k in range(m.end(), i - 1):
            if out[k] != "\n":
                out[k] = " "
    return "".join(out)


def arrows(crate):
    """Every arrow of a crate: (file, line, module there, module named,
    path as written)."""
    found = []
    for path, (module, text) in crate.files.items():
        text = without_tests(text)
        inner = inline_at(text)

        def lines(offset, text=text):
            return text.count("\n", 0, offset) + 1

        taken = []
        for m in USE.finditer(text):
            taken.append((m.start(), m.end()))
            here = module + inner(m.start())
            for segments in use_paths(m.group(1)):
                segments = [s for s in segments if s != "r#"]
                target = crate.resolve(segments, here)
                if target is not None:
                    found.append((path, lines(m.start()), here, target, "::".join(segments)))
        for m in PATH.finditer(text):
            if any(a <= m.start() < b for a, b in taken):
                continue
            if re.search(r"\bin\s*$", text[max(0, m.start() - 8) : m.start()]):
                continue  # `pub(in crate::x)` is a visibility
            segments = re.split(r"\s*::\s*", m.group(1))
            here = module + inner(m.start())
            if segments[0] not in KEYWORDS and here + (segments[0],) not in crate.modules:
                continue
            target = crate.resolve(segments, here)
            if target is not None:
                found.append((path, lines(m.start()), here, target, "::".join(segments)))
    return found


def cycles(graph):
    """The strongly connected components of `graph` with two nodes or more
    (Tarjan's algorithm), each as a sorted list."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def elementary_cycles(graph, members):
    """Every cycle inside one component that passes no module twice, the
    shortest first: each a list of modules, ending where it started."""
    order = {v: k for k, v in enumerate(members)}
    found = []

    def walk(start, path, seen):
        for w in sorted(graph[path[-1]]):
            if w == start:
                found.append(path + [start])
            elif w in order and order[w] > order[start] and w not in seen:
                walk(start, path + [w], seen | {w})

    for start in members:
        walk(start, [start], {start})
    return sorted(found, key=lambda c: (len(c), c))


def crate_roots(repo):
    for src in [repo / "src", repo / "cli" / "src", *sorted(repo.glob("crates/*/src"))]:
        for root in [src / "lib.rs", src / "main.rs", *sorted(src.glob("bin/*.rs"))]:
            if root.exists():
                yield root


def scan(repo, show_graph):
    problems = 0
    for root in crate_roots(repo):
        crate = Crate(repo, root)
        ties = {}  # (from unit, to unit) -> [(file, line, path)]
        for path, line, here, target, written in arrows(crate):
            a, b = crate.unit(here), crate.unit(target)
            if a != b:
                ties.setdefault((a, b), []).append((crate.name(path), line, written))
            problems += layering(crate, path, line, here, target, written)
        graph = {}
        for a, b in ties:
            graph.setdefault(a, set()).add(b)
            graph.setdefault(b, set())
        if show_graph:
            print(f"# {crate.name(root)}")
            for (a, b), where in sorted(ties.items()):
                names = ", ".join(sorted({w for _, _, w in where}))
                print(f"{a} -> {b}: {names}")
        for members in cycles(graph):
            problems += 1
            print(f"import cycle among {', '.join(members)}:")
            every = elementary_cycles(graph, members)
            for cycle in every[:SHOWN]:
                print(f"  {' -> '.join(cycle)}")
            if len(every) > SHOWN:
                print(f"  ({len(every) - SHOWN} more cycles through the same modules)")
            print("  the arrows between them:")
            for (a, b), where in sorted(ties.items()):
                if a in members and b in members:
                    print(f"  {a} -> {b}")
                    for file, line, written in where:
                        print(f"    {file}:{line}: {written}")
    return problems


def layering(crate, path, line, here, target, written):
    """1, after printing it, when `path` is a lower file naming an upper one."""
    if crate.name(crate.modules[()]) != "src/lib.rs" or not here or not target:
        return 0
    if here[0] in LOWER and target[0] in UPPER:
        to = crate.name(crate.modules[target])
        print(f"upward import: {crate.name(path)}:{line} -> {to}: {written}")
        return 1
    return 0


def main(argv):
    show_graph = "--graph" in argv
    rest = [a for a in argv if a != "--graph"]
    if any(a.startswith("-") for a in rest) or len(rest) > 1:
        print(__doc__.split("\n\n")[-1], file=sys.stderr)
        return 2
    repo = Path(rest[0] if rest else Path(__file__).resolve().parent.parent).resolve()
    problems = scan(repo, show_graph)
    if problems:
        print(f"import scan: {problems} problem(s) found", file=sys.stderr)
        return 1
    print("import scan: no cycles, nothing imported upward")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
