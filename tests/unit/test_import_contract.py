"""The architecture, enforced: which package may import which (AST, no imports executed).

- the pure cores import neither synapse nor twisted (they run in Lambdas, the MCP sidecar
  and unit tests without a homeserver);
- the MCP sidecar does not import the Synapse modules;
- the Synapse modules do not import each other in a cycle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "synapse_phenom"
CORES = [
    "rooms",
    "admin",
    "cognito",
    "moderation",
    "previews",
    "db.py",
    "memo.py",
    "endpoints.py",
    "config.py",
    # Implementation B (PostgreSQL I/O, but never Synapse: it runs in the sidecar and Lambdas)
    "lite",
]
FORBIDDEN_IN_CORES = ("synapse", "twisted")


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _nodes(tree: ast.AST, runtime_only: bool) -> Iterator[ast.AST]:
    for node in ast.iter_child_nodes(tree):
        if runtime_only and _is_type_checking(node):
            assert isinstance(node, ast.If)
            for child in node.orelse:
                yield child
                yield from _nodes(child, runtime_only)
            continue
        yield node
        yield from _nodes(node, runtime_only)


def imports(path: Path, runtime_only: bool = False) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import in ``path``, also inside functions (a
    lazy import is still a dependency) and, unless ``runtime_only``, under TYPE_CHECKING."""
    tree = ast.parse(path.read_text(), str(path))
    inside = path.is_relative_to(PACKAGE)
    package = module_name(path) if inside else ""
    if inside and path.name != "__init__.py":
        package = package.rpartition(".")[0]
    for node in _nodes(tree, runtime_only):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")
                parent = parent[: len(parent) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            yield node.lineno, base
            for alias in node.names:  # `from synapse_phenom.modules import rooms`
                yield node.lineno, f"{base}.{alias.name}"


def files_of(target: str) -> list[Path]:
    path = PACKAGE / target
    return [path] if path.is_file() else sorted(path.rglob("*.py"))


def violations(paths: list[Path], forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for path in paths:
        for line, name in imports(path):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                found.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}")
    return found


@pytest.mark.parametrize("core", CORES)
def test_cores_import_neither_synapse_nor_twisted(core: str) -> None:
    paths = files_of(core)
    assert paths, f"no core at synapse_phenom/{core}"
    assert violations(paths, FORBIDDEN_IN_CORES) == []


def test_mcp_does_not_import_the_synapse_modules() -> None:
    assert violations(files_of("mcp"), ("synapse_phenom.modules", "synapse", "twisted")) == []


def test_no_import_cycle_between_modules() -> None:
    modules = {module_name(p): p for p in files_of("modules")}
    graph: dict[str, set[str]] = {
        name: {dep for _, dep in imports(path, True) if dep in modules and dep != name}
        for name, path in modules.items()
    }
    # Imports under TYPE_CHECKING (a mixin naming the class it is mixed into) never run.
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycles.append([*stack[stack.index(dep) :], dep])
            elif dep not in state:
                visit(dep, [*stack, dep])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_the_checker_sees_a_core_importing_synapse(tmp_path: Path) -> None:
    # The contract must be able to fail: a core file with each kind of import is caught.
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from synapse.api.errors import SynapseError\n"
        "import twisted.internet\n"
        "def f():\n    from synapse.types import UserID\n"
    )
    found = [name for _, name in imports(bad)]
    assert "synapse.api.errors" in found and "twisted.internet" in found
    assert "synapse.types" in found


def test_rooms_and_cognito_modules_do_not_import_each_other() -> None:
    # Cognito supplies groups (synapse_phenom.cognito.login), the rooms module reconciles.
    rooms, cognito = files_of("modules/rooms.py"), files_of("modules/cognito.py")
    assert violations(rooms, ("synapse_phenom.modules.cognito",)) == []
    assert violations(cognito, ("synapse_phenom.modules.rooms",)) == []
