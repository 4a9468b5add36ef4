"""The import layers drawn in daemonkit/__init__.py hold (static: read with ``ast``).

Every ``import`` counts, at module level, inside functions and under
``TYPE_CHECKING``: a lazy import is still a dependency, only a later one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import daemonkit

pytestmark = pytest.mark.timeout(30)

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "daemonkit"
UPDATER = REPO / "updater"
# What the updater process must never import: the CLI is the top of the kit.
CLI_LAYER = "cli"


def drawn_layers() -> list[tuple[str, list[str]]]:
    """The ``::`` block of the package docstring: (layer, modules), highest first."""
    doc = daemonkit.__doc__ or ""
    block = doc.partition("::\n\n")[2].partition("\n\n")[0]
    layers: list[tuple[str, list[str]]] = []
    for line in block.splitlines():
        name, *modules = line.split()
        if line[4] == " ":  # a continuation of the layer above
            layers[-1][1].extend([name, *modules])
        else:
            layers.append((name, modules))
    return layers


def module_names(package: Path) -> set[str]:
    return {path.stem for path in package.glob("*.py")}


def kit_imports(path: Path) -> set[str]:
    """The daemonkit modules ``path`` imports (``__init__`` for the package itself)."""
    modules = module_names(PACKAGE)
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: a relative import"
            names = [node.module or ""]
            if node.module == "daemonkit":
                names = [f"daemonkit.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            top, _, rest = name.partition(".")
            if top == "daemonkit":
                found.add(rest if rest in modules else "__init__")
            elif top == "updater":
                found.add("updater")
    return found


LAYERS = drawn_layers()
RANK = {module: rank for rank, (_, members) in enumerate(reversed(LAYERS)) for module in members}


def test_the_drawing_places_every_module_once() -> None:
    placed = [module for _, members in LAYERS for module in members]
    assert sorted(placed) == sorted(set(placed)), "a module drawn in two layers"
    assert set(placed) == module_names(PACKAGE)


def test_no_module_imports_from_a_higher_layer() -> None:
    upward = {
        f"{module} -> {imported}"
        for module in RANK
        for imported in kit_imports(PACKAGE / f"{module}.py") - {"updater"}
        if RANK[imported] > RANK[module]
    }
    assert sorted(upward) == []


def test_no_import_cycle() -> None:
    graph = {module: kit_imports(PACKAGE / f"{module}.py") - {module} for module in RANK}
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, f"import cycle: {' -> '.join((*path, module))}"
        if module in done:
            return
        for imported in sorted(graph[module]):
            visit(imported, (*path, module))
        done.add(module)

    for module in sorted(graph):
        visit(module, ())


def test_daemonkit_never_imports_the_updater() -> None:
    importers = [m for m in RANK if "updater" in kit_imports(PACKAGE / f"{m}.py")]
    assert importers == []


def test_the_updater_never_imports_the_cli() -> None:
    cli = dict(LAYERS)[CLI_LAYER]
    imports = {
        f"updater/{path.name} -> {imported}"
        for path in sorted(UPDATER.glob("*.py"))
        for imported in kit_imports(path)
        if imported in cli
    }
    assert sorted(imports) == []


def test_the_checks_see_lazy_and_type_only_imports() -> None:
    # cli imports lifecycle only inside _run, remote imports it only for types.
    assert "lifecycle" in kit_imports(PACKAGE / "cli.py")
    assert "lifecycle" in kit_imports(PACKAGE / "remote.py")
