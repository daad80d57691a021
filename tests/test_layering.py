"""The package's import graph keeps its shape: layers that import one way, no cycle, no borrowed private names.

Read with ``ast`` from the source, so lazy imports inside functions count as much as those at the top. The
layers, lowest first: the plugin API and foundations at the top level of ``lrbench``; ``data`` and ``report``
(neither imports the other); ``eval``; ``training``; ``cli``, which nothing else imports. The package's own
``__init__`` (the public API) and ``__main__`` (``python -m lrbench``) may name anything.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lrbench"
LAYERS = {"": 0, "data": 1, "report": 1, "eval": 2, "training": 3, "cli": 4}


def module_files(root: Path = PACKAGE) -> dict[str, Path]:
    """Every module of the package by its dotted name (a package by its ``__init__``)."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = ["lrbench", *path.relative_to(root).with_suffix("").parts]
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, str, int]]:
    """(imported module, imported name or "", line) for each lrbench import in one module, lazy ones included.

    ``from . import x`` imports module ``x`` when there is one, else the name ``x`` of the package."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, "", node.lineno) for alias in node.names if alias.name in modules]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                if f"{source}.{alias.name}" in modules:
                    found.append((f"{source}.{alias.name}", "", node.lineno))
                elif source in modules:
                    found.append((source, alias.name, node.lineno))
    return found


def graph(root: Path = PACKAGE) -> dict[str, list[tuple[str, str, int]]]:
    modules = module_files(root)
    return {name: imports(name, path, modules) for name, path in modules.items()}


def layer(name: str) -> str:
    """The layer a module belongs to: its sub-package under ``lrbench``, or "" for the top level."""
    parts = name.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS) else ""


def cycles(edges: dict[str, list[tuple[str, str, int]]]) -> list[list[str]]:
    """The modules of each import cycle (strongly connected groups, by Tarjan's algorithm), sorted."""
    successors = {name: sorted({target for target, _, _ in found if target != name}) for name, found in edges.items()}
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in successors.get(node, []):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(successors):
        if node not in index:
            visit(node)
    return groups


def problems(root: Path = PACKAGE) -> list[str]:
    """Everything wrong with the import graph, one line each (empty when the house is in order)."""
    edges = graph(root)
    found = [f"import cycle: {' → '.join(group)}" for group in cycles(edges)]
    for name, targets in sorted(edges.items()):
        if name in ("lrbench", "lrbench.__main__"):  # the public API re-exports every layer; -m starts the CLI
            continue
        for target, imported, line in targets:
            where = f"{name} (line {line})"
            if imported.startswith("_") and not imported.startswith("__") and target != name:
                found.append(f"{where}: imports the private name {imported} of {target}")
            if target == "lrbench":
                found.append(f"{where}: imports {imported or 'the package'} from the package's API; import it "
                             "from the module that defines it")
                continue
            here, there = layer(name), layer(target)
            if LAYERS[there] > LAYERS[here] or (LAYERS[there] == LAYERS[here] and here != there):
                found.append(f"{where}: imports {target}, a layer above or beside it ({there or 'top'} into "
                             f"{here or 'top'})")
    return found


def test_the_package_imports_one_way_without_cycles_or_private_names():
    assert problems() == []


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "lrbench"
    for relative, text in {"__init__.py": "", **files}.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text, encoding="utf-8")
    return root


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"a.py": "def f():\n    from .b import x\n", "b.py": "from .a import f\n"},
         "import cycle: lrbench.a → lrbench.b"),
        ({"data/__init__.py": "", "data/pairs.py": "from ..cli import main\n", "cli/__init__.py": "main = 1\n"},
         "lrbench.data.pairs (line 1): imports lrbench.cli, a layer above or beside it (cli into data)"),
        ({"errors.py": "from .fileio import _helper\n", "fileio.py": "def _helper():\n    pass\n"},
         "lrbench.errors (line 1): imports the private name _helper of lrbench.fileio"),
        ({"data/__init__.py": "", "report/__init__.py": "", "report/results.py": "x = 1\n",
          "data/pairs.py": "from ..report.results import x\n"},
         "lrbench.data.pairs (line 1): imports lrbench.report.results, a layer above or beside it (report into "
         "data)"),
        ({"errors.py": "from . import __version__\n"},
         "lrbench.errors (line 1): imports __version__ from the package's API; import it from the module that "
         "defines it"),
    ],
    ids=["lazy-cycle", "into-cli", "private-name", "sideways", "package-api"],
)
def test_each_kind_of_bad_import_is_found(tmp_path, files, expected):
    assert expected in problems(_package(tmp_path, files))
