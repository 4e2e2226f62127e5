"""The package's layout rules, read from its import graph: imports only go down, no cycles.

Every ``import`` and ``from ... import`` in every module counts, including those inside
functions and under ``if TYPE_CHECKING:``: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import hookapi

ROOT = Path(hookapi.__file__).parent

# Consumers of the core: the core never imports them (`python -m hookapi` runs the CLI).
CONSUMERS = (
    "hookapi.__main__",
    "hookapi.cli",
    "hookapi.emulator",
    "hookapi.testing",
    "hookapi.fastapi",
    "hookapi.outbox",
    "hookapi.logging",
    "hookapi._logging",
)
# Packages whose private modules only their own package may import.
SEALED = ("hookapi._http", "hookapi._quota", "hookapi._redis")
# Modules that sit below the client and never import it.
BELOW_CLIENT = ("hookapi._http", "hookapi._quota", "hookapi._redis")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _resolve(module: str, is_package: bool, level: int, target: str | None) -> str:
    base = module.split(".") if is_package else module.split(".")[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, target] if target else base)


def _known(name: str, modules: set[str]) -> str | None:
    """The longest prefix of ``name`` that is a module of hookapi."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def import_graph() -> dict[str, set[str]]:
    paths = sorted(ROOT.rglob("*.py"))
    modules = {_module_name(path) for path in paths}
    graph: dict[str, set[str]] = {}
    for path in paths:
        name = _module_name(path)
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = _resolve(name, _is_package(path), node.level, node.module)
                else:
                    base = node.module or ""
                # `from . import x` may name a submodule: count it when it is one.
                targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
            for target in targets:
                found = _known(target, modules)
                if found is not None and found != name:
                    edges.add(found)
        graph[name] = edges
    return graph


GRAPH = import_graph()


def _inside(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _is_core(module: str) -> bool:
    return not any(_inside(module, consumer) for consumer in CONSUMERS)


def test_the_graph_is_read() -> None:
    # Guards the reader itself: edges that are known to exist are found.
    assert "hookapi._quota" in GRAPH["hookapi._client"]
    assert "hookapi._http._h1" in GRAPH["hookapi._http._pool"]
    assert "hookapi.testing._plugin" in GRAPH["hookapi.testing"]
    assert "hookapi.cli._demo" in GRAPH["hookapi.cli._main"]


def test_no_import_cycle() -> None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        stack.append(module)
        for target in sorted(GRAPH[module]):
            if state.get(target) == 1:
                cycle = [*stack[stack.index(target) :], target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        stack.pop()
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module)


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_no_module_imports_the_public_face(module: str) -> None:
    assert "hookapi" not in GRAPH[module], f"{module} imports hookapi/__init__.py"


# The public face re-exports some consumers (the outbox); it is imported by none of the core.
@pytest.mark.parametrize("module", sorted(m for m in GRAPH if _is_core(m) and m != "hookapi"))
def test_the_core_never_imports_its_consumers(module: str) -> None:
    bad = sorted(t for t in GRAPH[module] if not _is_core(t))
    assert not bad, f"{module} imports {bad}"


@pytest.mark.parametrize(
    "module", sorted(m for m in GRAPH if _inside(m, BELOW_CLIENT[0]) or _inside(m, BELOW_CLIENT[1]))
)
def test_http_and_quota_never_import_the_client(module: str) -> None:
    assert "hookapi._client" not in GRAPH[module]
    assert "hookapi._retry" not in GRAPH[module]


@pytest.mark.parametrize("package", SEALED)
def test_sealed_packages_are_used_through_their_face(package: str) -> None:
    for module, targets in GRAPH.items():
        if _inside(module, package):
            continue
        private = sorted(t for t in targets if _inside(t, package) and t != package)
        assert not private, f"{module} imports the insides of {package}: {private}"


def test_quota_never_imports_http() -> None:
    for module, targets in GRAPH.items():
        if _inside(module, "hookapi._quota"):
            assert not any(_inside(t, "hookapi._http") for t in targets), module
