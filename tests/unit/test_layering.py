"""The floors of the tree, checked from the source: a file may import only its own floor and those below.

    foundation  <-  store  <-  extract, pretrain  <-  retrieval  <-  evaluation  <-  the top floor
                                extract  <-  toyworld  <-  the top floor

Everything is one installed namespace, `lvmae`; the folders map into it as pyproject.toml's `package-dir`
says (`store/` is `lvmae.store`, `lvmae/evaluation/` is `lvmae.evaluation`). The top floor is the rest of
`lvmae`: the Python API, the CLI and its commands, the report and the web app. `foundation` imports no
stage; `extract` and `pretrain` stand side by side and never import each other; `toyworld` (the demo's
data and stand-in weights) is imported only by the top floor, benchmarks and tests; `lvmae/__init__.py`,
which every import of the namespace runs, imports only the ground floor (its API names load lazily, by
name). Every import counts, at module level or inside a function, and no two files import each other,
directly or round a longer circle. A bare `store` or `extract` (the folders' names, not installed)
is an import of nothing a user has.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import tomllib

from lvmae.foundation.loader import parse_python

ROOT = Path(__file__).resolve().parents[2]
LOWER = ("foundation", "store", "extract", "pretrain", "retrieval", "evaluation", "toyworld")
ALLOWED = {
    "foundation": {"foundation"},
    "store": {"foundation", "store"},
    "extract": {"foundation", "store", "extract"},
    "pretrain": {"foundation", "store", "pretrain"},
    "retrieval": {"foundation", "store", "extract", "pretrain", "retrieval"},
    "evaluation": {"foundation", "store", "extract", "pretrain", "retrieval", "evaluation"},
    "toyworld": {"foundation", "store", "extract", "toyworld"},
    "door": {"foundation"},  # lvmae/__init__.py
    "top": {*LOWER, "door", "top"},
}
BARE = {"foundation", "store", "extract", "pretrain", "retrieval", "toyworld"}
"""The repository's folder names: importable only from inside a checkout, never in a user's environment."""


def package_dirs(root: Path) -> dict[str, str]:
    """Folder -> the package it installs as, from pyproject.toml (e.g. "store" -> "lvmae.store")."""
    table = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    return {folder: package for package, folder in table.items()}


def floor(module: str) -> str:
    """The floor of an `lvmae` module."""
    if module == "lvmae":
        return "door"
    first = module.split(".")[1]
    return first if first in LOWER else "top"


def module_name(path: Path, folder: Path, package: str) -> str:
    parts = [*package.split("."), *path.relative_to(folder).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules(root: Path) -> dict[str, Path]:
    return {
        module_name(p, root / folder, package): p
        for folder, package in package_dirs(root).items()
        for p in sorted((root / folder).rglob("*.py"))
    }


def parse(path: Path) -> ast.Module:
    """The file's syntax tree (through the loader's `parse_python`, which rides out CPython 3.11's
    spurious "AST constructor recursion depth mismatch")."""
    return parse_python(path.read_text(), str(path))


def imports_of(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """Project modules that the file imports (a `from package import submodule` names the submodule)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(parse(path)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this file's package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:
                child = f"{base}.{alias.name}"
                found.add(child if child in modules else base)
    return {m for m in found if m in modules or m.split(".")[0] in BARE}


def graph(root: Path) -> dict[str, set[str]]:
    modules = project_modules(root)
    return {name: imports_of(path, name, modules) for name, path in modules.items()}


def bare_imports(edges: dict[str, set[str]]) -> list[str]:
    return sorted(f"{src} imports {dst}" for src, dsts in edges.items() for dst in dsts if dst.split(".")[0] in BARE)


def upward_imports(edges: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{src} imports {dst}"
        for src, dsts in edges.items()
        for dst in dsts
        if dst.split(".")[0] == "lvmae" and floor(dst) not in ALLOWED[floor(src)]
    )


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Import circles between files (Tarjan's strongly connected components of more than one file)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in edges.get(v, ()):
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_every_import_goes_down_the_floors():
    assert upward_imports(graph(ROOT)) == []


def test_nothing_imports_a_folder_by_its_bare_name():
    assert bare_imports(graph(ROOT)) == []


def test_no_import_circles_between_files():
    assert circles(graph(ROOT)) == []


def test_the_floors_are_all_there():
    # A rename that empties a floor would make the checks above pass vacuously.
    floors = {floor(name) for name in graph(ROOT)}
    assert floors == set(ALLOWED)


@pytest.mark.parametrize(
    "file, line, broken",
    [
        ("foundation/progress.py", "from lvmae.store import Store", "lvmae.foundation.progress imports lvmae.store"),
        (
            "store/verify.py",
            "from lvmae.foundation.progress import bar\nfrom lvmae.commands.command import fail",
            "lvmae.store.verify imports lvmae.commands.command",
        ),
        ("extract/encoder.py", "import lvmae.toyworld.encoder", "lvmae.extract.encoder imports lvmae.toyworld.encoder"),
        (
            "pretrain/features.py",
            "from lvmae.extract.work import FrozenModels",
            "lvmae.pretrain.features imports lvmae.extract.work",
        ),
        (
            "retrieval/search.py",
            "from lvmae.evaluation.truth import Truth",
            "lvmae.retrieval.search imports lvmae.evaluation.truth",
        ),
        (
            "lvmae/evaluation/probes.py",
            "from lvmae.report import write_report",
            "lvmae.evaluation.probes imports lvmae.report",
        ),
        ("lvmae/__init__.py", "from lvmae.api import extract", "lvmae imports lvmae.api"),
    ],
)
def test_an_upward_import_is_caught(tmp_path, file, line, broken):
    copy = _copy_tree(tmp_path)
    path = copy / file
    path.write_text(path.read_text() + f"\n{line}\n")
    assert broken in upward_imports(graph(copy))


def test_a_circle_is_caught(tmp_path):
    copy = _copy_tree(tmp_path)
    path = copy / "store" / "manifest.py"
    path.write_text(path.read_text() + "\nfrom lvmae.store.store import Store\n")
    assert any({"lvmae.store.manifest", "lvmae.store.store"} <= set(c) for c in circles(graph(copy)))


def test_a_bare_folder_import_is_caught(tmp_path):
    copy = _copy_tree(tmp_path)
    path = copy / "retrieval" / "search.py"
    path.write_text(path.read_text() + "\nfrom store import Store\n")
    assert "lvmae.retrieval.search imports store" in bare_imports(graph(copy))


def _copy_tree(tmp_path: Path) -> Path:
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    for folder in package_dirs(ROOT):
        for source in (ROOT / folder).rglob("*.py"):
            target = tmp_path / source.relative_to(ROOT)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(source.read_text())
    return tmp_path
