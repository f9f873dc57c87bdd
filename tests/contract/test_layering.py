"""The engine's layers, enforced: a module that imports upward fails here.

    cli            the commands (top: nothing below imports it)
    integrations   HF callback, Ray scan backend        plots   figures
    forensics      offline detectors, health, scan       determinism   replicas, card
                                                         (uses live's ProcessGroup only)
    live           rules, guard, monitor (hot path: ingest + a few base modules only)
    ingest         alias table, parser, readers, Run (bottom: imports no other layer)
    base modules   errors, constants, rulebook, resume (rldk_engine/*.py)

Imports are read with `ast`, function-level ones included (a lazy import is still a
dependency); imports under `if TYPE_CHECKING:` are not (they never run). Known violations
that another branch removes are listed with that branch, and their own xfail test says
when they are gone (the lead flips them after merging).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from helpers import REPO

ENGINE = REPO / "rldk_engine"
BASE_MODULES = {"errors", "constants", "rulebook", "resume"}
# The one piece of live that other layers share: spawning and stopping a process tree
# (determinism runs its replicas with it).
SHARED_FROM_LIVE = {"rldk_engine.live.process"}


@dataclass(frozen=True)
class Import:
    importer: str
    target: str  # a module of rldk_engine when it is one, else the top-level name imported
    line: int
    top_level: bool  # runs when the importer is imported (not inside a function)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def engine_modules() -> dict[str, Path]:
    modules = {module_name(p): p for p in sorted(ENGINE.rglob("*.py"))}
    assert len(modules) > 20, modules
    return modules


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> Iterator[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_package = path.name == "__init__.py"

    def walk(node: ast.AST, top_level: bool) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for stmt in child.orelse:
                    yield from walk_one(stmt, top_level)
                continue
            yield from walk_one(child, top_level)

    def walk_one(node: ast.AST, top_level: bool) -> Iterator[Import]:
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(name, _engine_target(alias.name, modules), node.lineno, top_level)
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(name, is_package, node)
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                target = sub if sub in modules else _engine_target(source, modules)
                yield Import(name, target, node.lineno, top_level)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            yield from walk(node, False)
        else:
            yield from walk(node, top_level)

    yield from walk(tree, True)


def _engine_target(dotted: str, modules: dict[str, Path]) -> str:
    """The engine module `dotted` names (its longest known prefix), or its top-level name."""
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return parts[0]


def all_imports() -> list[Import]:
    modules = engine_modules()
    return [imp for name, path in modules.items() for imp in imports_of(name, path, modules)]


def layer(module: str) -> str | None:
    """`ingest`, `live`, ... for rldk_engine.<layer>.*; `base` for rldk_engine/<x>.py; the
    package root is `root`; None outside the engine."""
    parts = module.split(".")
    if parts[0] != "rldk_engine":
        return None
    if len(parts) == 1:
        return "root"
    if (ENGINE / parts[1]).is_dir():
        return parts[1]
    return "base" if parts[1] in BASE_MODULES else parts[1]


def allowed(importer: str, target: str) -> str | None:
    """None when `importer` may import `target`, else the rule it breaks."""
    source, dest = layer(importer), layer(target)
    if target.split(".")[0] in ("rldk_tui", "textual"):
        return "nothing in rldk_engine imports rldk_tui or textual"
    if dest is None or dest == source or dest == "root":
        return None
    if dest == "cli":
        return "only the cli imports the cli (it is the top layer)"
    if source == "ingest" and dest != "base":
        return "ingest imports nothing from the other layers"
    if source == "live" and dest not in ("ingest", "base"):
        return "live imports only ingest, its own modules and errors/constants/rulebook/resume"
    if source == "live" and dest == "base" and target.split(".")[1] not in BASE_MODULES:
        return "live imports only the base modules errors/constants/rulebook/resume"
    if source == "determinism" and dest == "live" and target not in SHARED_FROM_LIVE:
        return "determinism imports from live only the process group (live/process.py)"
    if source == "forensics" and dest == "live":
        return "forensics does not import live"
    return None


def violations() -> dict[tuple[str, str], str]:
    found: dict[tuple[str, str], str] = {}
    for imp in all_imports():
        rule = allowed(imp.importer, imp.target)
        if rule is not None:
            found[(imp.importer, imp.target)] = f"line {imp.line}: {rule}"
    return found


def cycles(top_level_only: bool) -> list[frozenset[str]]:
    """Strongly connected components (size > 1, or a self-import) of the engine's graph."""
    graph: dict[str, set[str]] = {name: set() for name in engine_modules()}
    for imp in all_imports():
        if imp.target in graph and (imp.top_level or not top_level_only):
            graph[imp.importer].add(imp.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def connect(node: str) -> None:  # Tarjan
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph[node]:
                found.append(frozenset(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


# ----------------------------------------------------------------------------- the checker


def test_the_import_reader_sees_function_level_and_relative_imports(tmp_path, monkeypatch):
    source = (
        "from __future__ import annotations\n"
        "from typing import TYPE_CHECKING\n"
        "import rldk_engine.ingest.parse\n"
        "from . import run\n"
        "if TYPE_CHECKING:\n"
        "    from rldk_engine.live import rules\n"
        "def late():\n"
        "    from rldk_engine.forensics.detectors import detect\n"
        "    import textual.app\n"
    )
    path = ENGINE / "ingest" / "probe.py"
    monkeypatch.setattr(Path, "read_text", lambda self, **kw: source)
    modules = {**engine_modules(), "rldk_engine.ingest.probe": path}
    got = {(i.target, i.top_level) for i in imports_of("rldk_engine.ingest.probe", path, modules)}
    assert ("rldk_engine.ingest.parse", True) in got
    assert ("rldk_engine.ingest.run", True) in got
    assert ("rldk_engine.forensics.detectors", False) in got
    assert ("textual", False) in got
    assert not any(target.startswith("rldk_engine.live") for target, _ in got)
    assert allowed("rldk_engine.ingest.probe", "rldk_engine.forensics.detectors")
    assert allowed("rldk_engine.live.rules", "rldk_engine.forensics.health")
    assert allowed("rldk_engine.forensics.scan", "rldk_engine.live.rules")
    assert allowed("rldk_engine.determinism.check", "rldk_engine.live.monitor")
    assert allowed("rldk_engine.determinism.replicas", "rldk_engine.live.process") is None
    assert allowed("rldk_engine.ingest.readers", "textual")
    assert allowed("rldk_engine.live.monitor", "rldk_engine.ingest.parse") is None
    assert allowed("rldk_engine.live.monitor", "rldk_engine.rulebook") is None


def test_the_cycle_finder_finds_a_two_module_cycle(monkeypatch):
    fake = [Import("rldk_engine.ingest.parse", "rldk_engine.ingest.run", 1, True),
            Import("rldk_engine.ingest.run", "rldk_engine.ingest.parse", 1, False)]
    monkeypatch.setattr(sys.modules[__name__], "all_imports", lambda: fake)
    assert cycles(top_level_only=False) == [
        frozenset({"rldk_engine.ingest.parse", "rldk_engine.ingest.run"})]
    assert cycles(top_level_only=True) == []


# ----------------------------------------------------------------------------- the rules


def test_no_layer_imports_upward():
    found = violations()
    assert found == {}, "\n".join(f"{a} imports {b} ({why})" for (a, b), why in found.items())


def test_no_import_cycle_at_import_time():
    assert cycles(top_level_only=True) == []


def test_no_import_cycle_through_function_level_imports():
    assert [sorted(c) for c in cycles(top_level_only=False)] == []


def _import_in_fresh_interpreter(names: list[str]) -> dict:
    """Import `names` in a new interpreter; report import failures and which module first
    pulled in torch, textual or rldk_tui."""
    code = (
        "import importlib, json, sys\n"
        f"names = {names!r}\n"
        "failed, culprits = {}, {}\n"
        "for name in names:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ImportError as exc:\n"
        "        failed[name] = str(exc)\n"
        "    for heavy in ('torch', 'textual', 'rldk_tui'):\n"
        "        if heavy in sys.modules and heavy not in culprits:\n"
        "            culprits[heavy] = name\n"
        "print(json.dumps({'failed': failed, 'culprits': culprits}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_importing_the_engine_imports_neither_torch_nor_textual():
    """Every rldk_engine module, imported in one fresh interpreter (torch costs seconds and
    is an optional extra; textual belongs to rldk_tui)."""
    names = sorted(name for name in engine_modules()
                   if not name.endswith("__main__"))
    result = _import_in_fresh_interpreter(names)
    assert result["culprits"] == {}, f"imported at import time by: {result['culprits']}"
    # an optional extra may be missing on a machine; an engine module must never be
    engine_failures = {n: e for n, e in result["failed"].items() if "rldk_engine" in e}
    assert engine_failures == {}

