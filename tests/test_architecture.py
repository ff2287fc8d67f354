"""Which package of ``src/recolorize`` may import which (issue 13), and the size limits of its modules.

Every module is read with ``ast`` (nothing is imported): each ``import recolorize.X`` / ``from recolorize.X
import ...`` / relative import / ``importlib.import_module("recolorize.X...")``, at any depth (inside
functions and ``if TYPE_CHECKING:`` blocks too), is an arrow from the importing module's unit to the
imported one's. A unit is the first name under ``recolorize`` (``recolorize.training.loop`` -> ``training``);
``recolorize`` itself (the package ``__init__``, the public API) is a unit of its own. Each unit sits in one
layer of :data:`LAYERS`; an arrow may point down or stay in its layer, never up, and the units of
:data:`APART` never import each other. docs/architecture.md draws the same layers (checked below).

``python tests/test_architecture.py`` prints the arrows found.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from itertools import pairwise
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "recolorize"
DOCS = ROOT / "docs" / "architecture.md"

#: The layers, from the bottom: (name, units). A unit may import its own modules, any unit of a lower
#: layer and the other units of its layer (unless :data:`APART`), never a unit of a higher layer.
LAYERS: tuple[tuple[str, frozenset[str]], ...] = (
    (
        "foundation",
        frozenset({"errors", "io_utils", "image_formats", "colour", "config", "config_json", "threads"}),
    ),
    ("imaging and the colour prior", frozenset({"imaging", "prior"})),
    ("inference", frozenset({"inference"})),
    ("pretrained weights", frozenset({"pretrained", "weights"})),
    ("networks", frozenset({"networks"})),
    ("network maths", frozenset({"lpips", "losses", "optimize"})),
    ("data", frozenset({"data"})),
    ("training, the torch pipeline and export", frozenset({"training", "torch_inference", "export"})),
    ("evaluation", frozenset({"evaluation"})),
    ("commands and app", frozenset({"commands", "app"})),
    ("entry points", frozenset({"cli", "__main__", "recolorize"})),
)
#: (importer, imported) units of one layer that must not import each other: training, the torch pipeline
#: and the export are independent (a model is trained, checked against torch, or exported), and the web app
#: is a library the ``app`` command starts, never the other way round. Inference sits below every torch
#: unit (issue 22: ONNX Runtime + NumPy), so the layers alone keep networks and training out of it.
APART: frozenset[tuple[str, str]] = frozenset(
    {
        ("torch_inference", "training"),
        ("training", "torch_inference"),
        ("export", "training"),
        ("training", "export"),
        ("app", "commands"),
    }
)
#: Units that never import torch, at any depth (function-local imports included): what ``transfer``,
#: ``lut``, ``lut-apply`` and ``app`` run (tests/test_onnx_runtime.py runs them with torch unimportable).
TORCH_FREE: frozenset[str] = frozenset({"prior", "inference", "app"})

#: Largest function (lines from ``def`` to its last line, as ``end_lineno - lineno``): a newcomer reads one
#: job at a time. Modules have no line cap (retired in issue 21: one job per module is the rule, and a split
#: made only to pass a cap scattered one job over several files).
MAX_FUNCTION_LINES = 80
#: Modules with functions still over the limit while they are being split; each must still be over it, so
#: that an entry is removed as soon as its split lands.
NOT_YET_SPLIT: frozenset[str] = frozenset()
#: Import cycles still being untangled, each as the modules that import one another (directly or not);
#: each must still be a cycle, so that an entry is removed as soon as its fix lands. Issue 22 wants none.
NOT_YET_ACYCLIC: frozenset[frozenset[str]] = frozenset({})

Edge = tuple[str, str, str]  # (importing module, imported module, "path:line")


def layer_of(unit: str) -> int:
    """The index in :data:`LAYERS` of a unit; KeyError for a unit no layer names."""
    for index, (_, units) in enumerate(LAYERS):
        if unit in units:
            return index
    raise KeyError(unit)


def unit_of(module: str) -> str:
    """``recolorize.training.loop`` -> ``training``; ``recolorize`` -> ``recolorize``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_module(name: str, package: Path) -> bool:
    """Whether ``recolorize.a.b`` is a module or package under ``package`` (not a name defined in one)."""
    path = package.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _imported(node: ast.AST, module: str, is_package: bool, package: Path) -> list[str]:
    """The ``recolorize`` modules an import statement (or ``importlib.import_module`` call) names."""
    names: list[str] = []
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
        if node.level:  # relative: resolve against the importing module's package
            base = module.split(".") if is_package else module.split(".")[:-1]
            base = base[: len(base) - node.level + 1]
            source = ".".join(base + ([node.module] if node.module else []))
        else:
            source = node.module or ""
        # ``from recolorize import errors`` imports the module recolorize.errors, not the package
        names = [
            f"{source}.{alias.name}" if _is_module(f"{source}.{alias.name}", package) else source
            for alias in node.names
        ]
    elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == (
        "import_module"
    ):
        if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            names = [node.args[0].value]
        elif node.args and isinstance(node.args[0], ast.JoinedStr) and node.args[0].values:
            head = node.args[0].values[0]  # f"recolorize.commands.{name}" -> recolorize.commands
            if isinstance(head, ast.Constant) and isinstance(head.value, str):
                names = [head.value.rstrip(".")]
    return [name for name in names if name == "recolorize" or name.startswith("recolorize.")]


def import_edges(package: Path = PACKAGE) -> list[Edge]:
    """Every import of a ``recolorize`` module by a module under ``package``, at any depth."""
    edges: list[Edge] = []
    for path in sorted(package.rglob("*.py")):
        module = module_name(path, package)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            for target in _imported(node, module, path.name == "__init__.py", package):
                edges.append((module, target, f"{path.relative_to(package.parent)}:{node.lineno}"))
    return edges


def forbidden(edges: Iterable[Sequence[str]]) -> list[str]:
    """The edges that break the layering, one line each (empty when the layering holds).

    An edge is (importer, imported[, where]) with dotted module names. Upward arrows, arrows between
    :data:`APART` units and units in no layer are reported.
    """
    problems = []
    for importer, imported, *where in edges:
        a, b = unit_of(importer), unit_of(imported)
        at = f" ({where[0]})" if where else ""
        if a == b:
            continue
        try:
            la, lb = layer_of(a), layer_of(b)
        except KeyError as error:
            problems.append(f"{importer} -> {imported}{at}: {error.args[0]} is in no layer of LAYERS")
            continue
        if lb > la:
            problems.append(
                f"{importer} -> {imported}{at}: {a} ({LAYERS[la][0]}) imports {b} ({LAYERS[lb][0]}), "
                "a higher layer"
            )
        elif (a, b) in APART:
            problems.append(f"{importer} -> {imported}{at}: {a} must not import {b}")
    return problems


def cycles(edges: Iterable[Sequence[str]]) -> dict[frozenset[str], list[str]]:
    """The import cycles between modules: for each group of modules that import one another, directly or
    not (a strongly connected component of the import graph), one cycle through it as ``[a, b, ..., a]``.

    Every import counts, wherever it stands (in a function, under ``if TYPE_CHECKING:``): a cycle that
    only works because an import was moved into a function still ties the modules into one unit that
    cannot be read, tested or replaced alone.
    """
    graph: dict[str, set[str]] = defaultdict(set)
    for importer, imported, *_ in edges:
        if importer != imported:
            graph[importer].add(imported)
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(module: str) -> None:  # Tarjan's strongly connected components
        order[module] = low[module] = len(order)
        stack.append(module)
        for target in sorted(graph.get(module, ())):
            if target not in order:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], order[target])
        if low[module] == order[module]:
            group = {stack.pop()}
            while module not in group:
                group.add(stack.pop())
            if len(group) > 1:
                groups.append(group)

    for module in sorted(graph):
        if module not in order:
            visit(module)
    return {frozenset(group): _cycle_through(graph, group) for group in groups}


def _cycle_through(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    """A shortest cycle from the group's first module back to it, inside the group (breadth first)."""
    start = min(group)
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for module in frontier:
            for target in sorted(graph[module] & group):
                if target == start:
                    path = [module]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if target not in came_from:
                    came_from[target] = module
                    following.append(target)
        frontier = following
    raise AssertionError(f"no cycle through {sorted(group)}")


def describe_cycle(cycle: list[str], edges: Iterable[Sequence[str]]) -> str:
    """``a -> b (where) -> a (where)``: each arrow with the line that makes it."""
    where = {(a, b): rest[0] for a, b, *rest in edges if rest}
    steps = [cycle[0]] + [f"{b} ({where.get((a, b), '?')})" for a, b in pairwise(cycle)]
    return " -> ".join(steps)


def arrows(edges: Iterable[Sequence[str]]) -> dict[tuple[str, str], set[str]]:
    """(importer unit, imported unit) -> the importing modules, for arrows between different units."""
    found: dict[tuple[str, str], set[str]] = defaultdict(set)
    for importer, imported, *_ in edges:
        if unit_of(importer) != unit_of(imported):
            found[(unit_of(importer), unit_of(imported))].add(importer)
    return found


# ------------------------------------------------------------------------------------------- the code


def test_no_import_runs_upward() -> None:
    edges = import_edges()
    assert len(edges) > 100, "the import walk found almost nothing: is src/recolorize where it was?"
    assert not forbidden(edges), "\n".join(forbidden(edges))


def test_the_modules_import_no_cycle() -> None:
    """The module import graph (every import, in functions and under ``TYPE_CHECKING`` too) is acyclic,
    but for the cycles of :data:`NOT_YET_ACYCLIC`; a cycle found is printed, arrow by arrow."""
    edges = import_edges()
    found = cycles(edges)
    new = [describe_cycle(cycle, edges) for group, cycle in found.items() if group not in NOT_YET_ACYCLIC]
    assert not new, "import cycles:\n" + "\n".join(new)
    gone = sorted(sorted(group) for group in NOT_YET_ACYCLIC - set(found))
    assert not gone, f"remove from NOT_YET_ACYCLIC, they are no longer cycles: {gone}"


def test_a_cycle_is_found_through_function_and_type_checking_imports(tmp_path: Path) -> None:
    package = tmp_path / "recolorize"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def late():\n    from recolorize import b\n")
    (package / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from recolorize.c import thing\n"
    )
    (package / "c.py").write_text("import recolorize.a\nimport recolorize.d\n")
    (package / "d.py").write_text("")
    edges = import_edges(package)
    found = cycles(edges)
    assert list(found.values()) == [["recolorize.a", "recolorize.b", "recolorize.c", "recolorize.a"]]
    assert describe_cycle(found[frozenset({"recolorize.a", "recolorize.b", "recolorize.c"})], edges) == (
        "recolorize.a -> recolorize.b (recolorize/a.py:2) -> recolorize.c (recolorize/b.py:3) "
        "-> recolorize.a (recolorize/c.py:1)"
    )
    assert cycles([("x.a", "x.b"), ("x.b", "x.c")]) == {}


def torch_imports(path: Path) -> list[str]:
    """Every ``import torch`` / ``from torch... import`` in a module, at any depth, as "path:line"."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        if any(name == "torch" or name.startswith("torch.") for name in names):
            where = path.relative_to(PACKAGE.parent) if path.is_relative_to(PACKAGE.parent) else path
            found.append(f"{where.as_posix()}:{node.lineno}")
    return found


def test_inference_never_imports_torch() -> None:
    found = [
        hit
        for unit in sorted(TORCH_FREE)
        for path in sorted((PACKAGE / unit).rglob("*.py"))
        for hit in torch_imports(path)
    ]
    assert not found, "torch imported where inference runs: " + ", ".join(found)


def test_the_torch_free_check_sees_a_function_local_import(tmp_path: Path) -> None:
    assert torch_imports(PACKAGE / "inference" / "pipeline.py") == []
    probe = tmp_path / "probe.py"
    probe.write_text(
        "def f():\n    from torch.nn import functional\n    import numpy, torch\n", encoding="utf-8"
    )
    assert len(torch_imports(probe)) == 2


def test_every_unit_is_in_a_layer() -> None:
    units = {unit_of(module_name(path)) for path in PACKAGE.rglob("*.py")}
    units |= {path.name for path in PACKAGE.iterdir() if path.is_dir() and not path.name.startswith("_")}
    missing = sorted(u for u in units if not any(u in layer for _, layer in LAYERS))
    assert not missing, f"place these in LAYERS (and in docs/architecture.md): {missing}"


def test_the_walk_sees_every_kind_of_import(tmp_path: Path) -> None:
    package = tmp_path / "recolorize"
    (package / "training").mkdir(parents=True)
    for name in ("__init__.py", "cli.py", "errors.py", "training/__init__.py", "training/stages.py"):
        (package / name).write_text("")
    (package / "training" / "loop.py").write_text(
        "import importlib\n"
        "from recolorize import errors\n"
        "from . import stages\n"
        "def late():\n"
        "    from ..cli import main\n"
        "    import recolorize.cli\n"
        "    importlib.import_module(f'recolorize.commands.{late}')\n"
    )
    targets = {target for module, target, _ in import_edges(package) if module == "recolorize.training.loop"}
    assert targets == {
        "recolorize.errors",
        "recolorize.training.stages",
        "recolorize.cli",
        "recolorize.commands",
    }


# ------------------------------------------------------------------------------------- the checking


@pytest.mark.parametrize(
    "edge",
    [
        ("recolorize.training.loop", "recolorize.cli"),  # training -> CLI
        ("recolorize.training.__main__", "recolorize.commands.train"),  # the arrow issue 13 removed
        ("recolorize.inference.pipeline", "recolorize.training.checkpoint"),  # inference under training
        ("recolorize.inference.pipeline", "recolorize.networks.model"),  # ONNX Runtime, never torch networks
        ("recolorize.torch_inference.recolorizer", "recolorize.training.loop"),  # siblings kept apart
        ("recolorize.app.server", "recolorize.commands.app"),
        ("recolorize.errors", "recolorize.imaging.decode"),
        ("recolorize.networks.model", "recolorize.data.pairs"),
        ("recolorize.evaluation.runner", "recolorize"),  # the public API is for users, not the library
        ("recolorize.networks.model", "recolorize.newpackage.thing"),  # a unit in no layer
    ],
)
def test_an_upward_arrow_is_rejected(edge: tuple[str, str]) -> None:
    assert len(forbidden([edge])) == 1


@pytest.mark.parametrize(
    "edge",
    [
        ("recolorize.evaluation.runner", "recolorize.inference.pipeline"),
        ("recolorize.commands.app", "recolorize.app.server"),
        ("recolorize.cli", "recolorize.commands.train"),
        ("recolorize.config", "recolorize.errors"),  # within the foundation
        ("recolorize.training.loop", "recolorize.training.checkpoint"),
        ("recolorize", "recolorize.inference.pipeline"),
    ],
)
def test_a_downward_arrow_is_allowed(edge: tuple[str, str]) -> None:
    assert forbidden([edge]) == []


# ------------------------------------------------------------------------------------------- the docs


def documented_layers(text: str) -> list[tuple[str, frozenset[str]]]:
    """The layers drawn between ``<!-- layers -->`` and ``<!-- /layers -->``: lines ``N. name: a, b``."""
    block = text.split("<!-- layers -->", 1)[1].split("<!-- /layers -->", 1)[0]
    found = []
    for line in block.splitlines():
        match = re.match(r"^\s*(\d+)\. ([^:]+): ([\w, ]+?)(?:\s{2,}.*)?$", line)
        if match:
            units = frozenset(u.strip() for u in match.group(3).split(","))
            found.append((int(match.group(1)), match.group(2).strip(), units))
    found.sort()
    assert [n for n, _, _ in found] == list(range(1, len(found) + 1)), (
        "layers numbered 1, 2, ... from the bottom"
    )
    return [(name, units) for _, name, units in found]


def test_the_docs_draw_these_layers() -> None:
    assert documented_layers(DOCS.read_text(encoding="utf-8")) == list(LAYERS)
    text = DOCS.read_text(encoding="utf-8")
    for importer, imported in APART:
        assert f"{importer} -/-> {imported}" in text, (
            f"docs/architecture.md: say that {importer} -/-> {imported}"
        )


# ------------------------------------------------------------------------------------------- the sizes


def oversized(path: Path) -> list[str]:
    """What in a module is over :data:`MAX_FUNCTION_LINES`, one line each."""
    text = path.read_text(encoding="utf-8")
    where = path.relative_to(PACKAGE.parent).as_posix()
    found = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno
            if length > MAX_FUNCTION_LINES:
                found.append(
                    f"{where}:{node.lineno} {node.name}: {length} lines (at most {MAX_FUNCTION_LINES})"
                )
    return found


def test_functions_are_small() -> None:
    paths = sorted(PACKAGE.rglob("*.py"))
    too_long = [
        line
        for p in paths
        if p.relative_to(PACKAGE.parent).as_posix() not in NOT_YET_SPLIT
        for line in oversized(p)
    ]
    assert not too_long, "\n".join(too_long)
    split = sorted(name for name in NOT_YET_SPLIT if not oversized(PACKAGE.parent / name))
    assert not split, f"remove from NOT_YET_SPLIT, they are within the limits now: {split}"


if __name__ == "__main__":  # print the arrows between units, layer by layer
    for (a, b), modules in sorted(
        arrows(import_edges()).items(), key=lambda item: (-layer_of(item[0][0]), item[0])
    ):
        print(f"{a:>10} -> {b:<14} {', '.join(sorted(modules))}")
