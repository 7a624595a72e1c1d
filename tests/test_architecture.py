"""The structure stays easy to learn: middleware/ holds middleware only, nothing below it imports it, no cycles.

Unit: reads the source with ast, imports nothing of the service.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("actors", "brokers", "database", "middleware", "web")
CONTRACTS_DIST = ROOT / "worker-contracts"  # its own distribution: import name worker_contracts


def _modules() -> dict[str, Path]:
    found = {p.stem: p for p in ROOT.glob("*.py")}
    for base, package in [*((ROOT, p) for p in PACKAGES), (CONTRACTS_DIST, "worker_contracts")]:
        for path in (base / package).rglob("*.py"):
            parts = path.relative_to(base).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = _modules()


def _imports(path: Path, *, top_level_only: bool) -> set[str]:
    """Project modules ``path`` imports (at module level only, or anywhere)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {n for n in names if n in MODULES}


def test_middleware_modules_hold_middleware_classes_only():
    offenders = []
    for name, path in MODULES.items():
        if not name.startswith("middleware.") or name == "middleware":
            continue
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                bases = {getattr(b, "id", getattr(b, "attr", "")) for b in node.bases}
                if "Middleware" not in bases:
                    offenders.append(f"{name}.{node.name}")
            elif isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
                offenders.append(f"{name}.{node.name}()")
    assert offenders == []


def test_only_the_composition_root_imports_middleware():
    """Domain code, the CLI, the dashboard, the data layer and shared modules never reach into middleware/;
    ``actors`` (it builds the broker and its stack) is the one place that does."""
    offenders = {name: sorted(i for i in _imports(path, top_level_only=False) if i.startswith("middleware"))
                 for name, path in MODULES.items()
                 if not name.startswith("middleware") and name != "actors"}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_no_import_cycles_at_module_level():
    graph = {}
    for name, path in MODULES.items():
        targets = set()
        for imported in _imports(path, top_level_only=True):
            # "package.name" may be a module or a name inside a package: keep the longest module
            targets.add(imported if imported in MODULES else imported.rsplit(".", 1)[0])
        graph[name] = {t for t in targets if t != name and not name.startswith(t + ".")}
    cycles = []
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for target in graph.get(node, ()):
            if state.get(target) == 1:
                cycles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target, [*stack, target])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_code_run_in_extraction_children_imports_no_service_machinery():
    """A hard-limited child imports ``extraction`` (preloaded by the fork server): it must not drag in the
    broker, the database or the actors package, whose import configures a whole worker (measured: 0.6 s and
    +40 MB per child when it lived in actors/assets/)."""
    project = _imports(MODULES["extraction"], top_level_only=False)
    assert project <= {"errors"}
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, sandbox, extraction; print(' '.join(sorted(sys.modules)))"],
        cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    heavy = {"dramatiq", "peewee", "redis", "actors", "database", "brokers", "middleware", "prometheus_client"}
    assert sorted(m for m in loaded if m.split(".")[0] in heavy) == []


def test_the_contracts_distribution_imports_nothing_of_the_worker():
    """worker-contracts is installed alone by other services: pydantic, redis and itself only."""
    allowed = {"pydantic", "redis", "worker_contracts", "opentelemetry", "__future__"}
    stdlib = set(sys.stdlib_module_names)
    imported: set[str] = set()
    for path in (CONTRACTS_DIST / "worker_contracts").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module.split(".")[0])
    assert sorted(imported - allowed - stdlib) == []


def test_the_tracked_actors_table_matches_the_actors_status_track_options():
    from database.tracks import TRACKED_ACTORS

    declared = {}
    for path in (ROOT / "actors").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef):
                for decorator in node.decorator_list:
                    if isinstance(decorator, ast.Call):
                        for keyword in decorator.keywords:
                            if keyword.arg == "status_track" and isinstance(keyword.value, ast.Constant):
                                declared[node.name] = keyword.value.value
    assert declared == TRACKED_ACTORS
