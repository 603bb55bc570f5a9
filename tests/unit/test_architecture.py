"""Which way the arrows point: no import circle anywhere in the package, and a pure core that
imports nothing but itself and the standard library's pure parts (no adapter, no clock, no
randomness, no logging, no process, no database, no cloud library).

Every import counts: at the top, inside a function (a lazy import is still an arrow) and under
``TYPE_CHECKING`` (a type is a dependency too).
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import phorque

PACKAGE = Path(phorque.__file__).resolve().parent

#: The pure core (the model, plans, option checks, errors, the ports) and the policies. They run
#: the same in the daemon, the dry run, the sandbox and the replay.
CORE = ("phorque.core", "phorque.policy")
#: Standard modules the core must not import: the clock, randomness, logging, processes,
#: files and the network, the database.
FORBIDDEN = {"time", "datetime", "random", "logging", "subprocess", "os", "shutil", "pathlib",
             "socket", "threading", "sqlite3", "urllib", "http", "boto3", "botocore", "watchdog",
             "filelock"}


def modules(root: Path, package: str) -> dict[str, Path]:
    out = {}
    for path in root.rglob("*.py"):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imports(root: Path, package: str) -> dict[str, set[str]]:
    """Module -> every name it imports (absolute, as written or resolved from a relative one)."""
    found = modules(root, package)
    out: dict[str, set[str]] = {}
    for name, path in found.items():
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = here.split(".")[: len(here.split(".")) - node.level + 1]
                    base = ".".join([*up, base] if base else up)
                names.add(base)
                names |= {f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in found}
        out[name] = names
    return out


def graph(root: Path, package: str) -> dict[str, set[str]]:
    """Module -> the package's modules it imports."""
    found = modules(root, package)

    def owner(name: str) -> str | None:
        while name and name not in found:
            name = name.rpartition(".")[0]
        return name or None

    out = {}
    for name, names in imports(root, package).items():
        targets = {owner(n) for n in names if n == package or n.startswith(package + ".")}
        targets.discard(None)
        targets.discard(name)
        # Importing the package's own ``__init__`` from inside it is how a package reaches its
        # siblings; only modules count.
        out[name] = {t for t in targets if t is not None and not name.startswith(t + ".")}
    return out


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def in_core(name: str) -> bool:
    return any(name == c or name.startswith(c + ".") for c in CORE)


def test_the_package_has_no_import_circle():
    edges = graph(PACKAGE, "phorque")
    assert edges["phorque.act.engine"] >= {"phorque.act.executor", "phorque.core.ports", "phorque.adapters.state"}, \
        "the walk misses imports"
    assert circles(edges) == []


def test_the_pure_core_imports_only_the_core_and_pure_standard_modules():
    edges = graph(PACKAGE, "phorque")
    every = imports(PACKAGE, "phorque")
    core = [m for m in edges if in_core(m)]
    assert len(core) >= 10, core
    for module in core:
        outside = sorted(t for t in edges[module] if not in_core(t))
        assert outside == [], f"{module} imports {outside} from outside the core"
        io = sorted({n.split(".")[0] for n in every[module]} & FORBIDDEN)
        assert io == [], f"{module} imports {io}"


def test_a_circle_through_a_lazy_or_type_only_import_is_found(tmp_path):
    root = tmp_path / "pkg"
    (root / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "",
        "a.py": "from pkg import b\n",
        "b.py": "def later():\n    from pkg.sub import c\n",
        "sub/__init__.py": "",
        "sub/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..a import thing\n",
        "d.py": "import pkg.a\n",
    }
    for name, text in files.items():
        (root / name).write_text(textwrap.dedent(text))
    assert circles(graph(root, "pkg")) == [["pkg.a", "pkg.b", "pkg.sub.c"]]


#: Which rooms each room may import (ARCHITECTURE.md draws them). The package itself holds only
#: its version.
ROOMS = {
    "core": set(),
    "policy": {"core"},
    "adapters": {"core", "policy"},
    "act": {"core", "policy", "adapters"},
    "runtime": {"core", "policy", "adapters", "act"},
    "cli": {"core", "policy", "adapters", "act", "runtime"},
    "replay": {"core", "policy", "adapters", "act", "cli"},
}


def room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_each_room_imports_only_the_rooms_below_it():
    edges = graph(PACKAGE, "phorque")
    rooms = {room(m) for m in edges} - {""}
    assert rooms == set(ROOMS), "a module lies outside the rooms"
    wrong = sorted((m, t) for m, targets in edges.items() for t in targets
                   if room(m) and room(t) and room(t) != room(m) and room(t) not in ROOMS[room(m)])
    assert wrong == []


def test_the_product_imports_neither_the_test_bed_nor_the_tests():
    every = imports(PACKAGE, "phorque")
    wrong = sorted((m, n) for m, names in every.items() for n in names
                   if n.split(".")[0] in ("phorque_testbed", "tests"))
    assert wrong == []
