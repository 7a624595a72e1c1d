"""The structure stays easy to learn (docs/architecture.rst states these rules).

* The wheel's top-level import names are exactly ``actors``, ``middleware``, ``settings`` and ``worker_service``.
* ``middleware/`` holds middleware classes only; ``actors/`` holds actors only.
* Only the composition roots (``actors``, ``worker_service.runtime.bootstrap``) import ``middleware``.
* No import cycles at module level, and none between packages counting the imports inside functions too.
* Importing any module of ``worker_service`` has no side effects (fresh interpreter, no settings, no services).
* The code a hard-limited extraction child runs imports none of the service's machinery.
* ``worker_contracts`` (its own distribution) imports nothing of the worker.

Unit: reads the source with ast; the purity test imports the package in a child interpreter."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


PACKAGES = ("actors", "middleware", "worker_service")


CONTRACTS_DIST = ROOT / "worker-contracts"  # its own distribution: import name worker_contracts


COMPOSITION_ROOTS = {"actors", "worker_service.runtime.bootstrap"}
#: what the extraction code in the hard-limited children may use besides worker_service.errors
EXTRACTION_HELPERS = (
    "worker_service.assets.markdown",
    "worker_service.assets.documents",
    "worker_service.assets.ocr",
)


def _modules() -> dict[str, Path]:
    found = {"settings": ROOT / "settings.py"}
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


def test_the_repository_root_holds_no_other_python_module():
    """Anything new goes into worker_service/: a loose top-level module would be a new top-level import name."""
    assert sorted(p.name for p in ROOT.glob("*.py")) == ["settings.py"]


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


def test_actors_modules_declare_actors_and_nothing_else():
    """Each domain's actors module: actor functions (decorated), their options, calls into the package."""
    offenders = []
    for name, path in MODULES.items():
        if not name.startswith("actors."):
            continue
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef):
                decorated = any("actor" in ast.unparse(d) for d in node.decorator_list)
                if not decorated or len(node.body) > 3:
                    offenders.append(f"{name}.{node.name}()")
            elif isinstance(node, ast.ClassDef):
                offenders.append(f"{name}.{node.name}")
    assert offenders == []


def test_only_the_composition_roots_import_middleware():
    """Domain code, the CLI, the dashboard, the data layer and shared modules never reach into middleware/."""
    offenders = {
        name: sorted(i for i in _imports(path, top_level_only=False) if i.startswith("middleware"))
        for name, path in MODULES.items()
        if not name.startswith("middleware") and name not in COMPOSITION_ROOTS
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_package_never_imports_the_actors():
    """worker_service is what actors call; the arrow never points back (importing actors boots a worker)."""
    offenders = {
        name: sorted(i for i in _imports(path, top_level_only=False) if i.split(".")[0] == "actors")
        for name, path in MODULES.items()
        if name.startswith(("worker_service", "middleware"))
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_no_import_cycles_at_module_level():
    graph = {}
    for name, path in MODULES.items():
        targets = set()
        for imported in _imports(path, top_level_only=True):
            # "package.name" may be a module or a name inside a package: keep the longest module
            targets.add(imported if imported in MODULES else imported.rsplit(".", 1)[0])
        graph[name] = {t for t in targets if t != name and not name.startswith(t + ".")}
    assert _cycles(graph) == []


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle a depth-first walk of ``graph`` (node -> the nodes it imports) runs into."""
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                cycles.append(stack[stack.index(target) :] + [target])
            elif target not in state:
                visit(target, [*stack, target])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return cycles


def _package(module: str) -> str:
    """The package a module belongs to for the layering rule: ``worker_service.X`` (a module directly under
    worker_service is its own), else the top-level name."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "worker_service" and len(parts) > 1 else parts[0]


def _runtime_imports(path: Path) -> set[str]:
    """Project modules imported anywhere in ``path`` (inside functions too), except under ``if TYPE_CHECKING``."""
    tree = ast.parse(path.read_text())
    type_only = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for n in ast.walk(node)
    }
    names: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return {n for n in names if n in MODULES or n.rsplit(".", 1)[0] in MODULES}


def package_cycles() -> list[list[str]]:
    """Cycles in the graph of packages (worker_service.X, settings, middleware), imports inside functions
    included, the composition roots left out (they import everything by design)."""
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        if name in COMPOSITION_ROOTS or name.split(".")[0] in ("actors", "worker_contracts"):
            continue
        source = _package(name)
        targets = {_package(t) for t in _runtime_imports(path)} - {source, "actors", "worker_contracts"}
        graph.setdefault(source, set()).update(targets)
    return _cycles(graph)


def test_no_import_cycles_between_packages_counting_imports_inside_functions():
    """Issue 43: the module-level test could not see the 146 imports inside functions; a knot between packages
    (observability <-> runtime, health -> a broker) hid there."""
    assert package_cycles() == []


_PURITY_PROBE = r"""
import importlib, json, os, pkgutil, socket, sys

connections = []
real_connect = socket.socket.connect
def spy_connect(self, address):
    connections.append(repr(address))
    return real_connect(self, address)
socket.socket.connect = spy_connect
before = dict(os.environ)
cwd_files = set(os.listdir("."))

import worker_service
imported, exits = [], []
for info in pkgutil.walk_packages(worker_service.__path__, "worker_service."):
    if info.name.endswith(".__main__"):  # an entry point: running is what importing it means
        continue
    try:
        importlib.import_module(info.name)
        imported.append(info.name)
    except SystemExit as exc:
        exits.append(f"{info.name}: exit {exc.code}")
changed = sorted(k for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k))
print(json.dumps({"imported": imported, "exits": exits, "connections": connections, "environ": changed,
                  "new_files": sorted(set(os.listdir(".")) - cwd_files)}))
"""


def test_importing_every_module_of_the_package_has_no_side_effects(tmp_path):
    """Fresh interpreter, no settings, nothing listening where the defaults point: every module imports without
    connecting, migrating (no database file appears), exiting or changing os.environ."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.endswith(("_URL", "_PASSWORD", "_TOKEN", "_KEY", "_DSN")) and not k.startswith("PROMETHEUS")
    }
    env["BROKER_URL"] = "redis://127.0.0.1:1/0"  # a wrong setting must not matter: nothing is read at import
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run(
        [sys.executable, "-c", _PURITY_PROBE],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    expected = {m for m in MODULES if m.startswith("worker_service.") and not m.endswith(".__main__")}
    assert expected <= set(report["imported"])
    assert report["exits"] == [] and report["connections"] == [] and report["environ"] == []
    assert report["new_files"] == []


def test_code_run_in_extraction_children_imports_no_service_machinery():
    """A hard-limited child imports the extraction module (preloaded by the fork server): it must not drag in
    the broker, the database or the actors package, whose import configures a whole worker (measured: 0.6 s
    and +40 MB per child when it lived in actors/assets/)."""
    # supervision: the hard-limit module the children run in imports it already (dying with their parent)
    allowed = {
        "worker_service.errors",
        "worker_service.assets",
        "worker_service.runtime.supervision",
        *EXTRACTION_HELPERS,
    }
    for name in ("worker_service.assets.extraction", *EXTRACTION_HELPERS):
        assert _imports(MODULES[name], top_level_only=False) <= allowed, name
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, worker_service.runtime.hardlimit, worker_service.assets.extraction; "
            "print(' '.join(sorted(sys.modules)))",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    heavy = {"dramatiq", "peewee", "redis", "actors", "middleware", "prometheus_client"}
    heavy_inside = ("worker_service.database", "worker_service.brokers")
    assert sorted(m for m in loaded if m.split(".")[0] in heavy or m.startswith(heavy_inside)) == []


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
    from worker_service.database.tracks import TRACKED_ACTORS

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
