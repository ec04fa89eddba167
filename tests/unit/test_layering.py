"""The floors of the tree, checked from the source: a file may import only its own floor and those below.

    foundation  <-  store  <-  extract, pretrain  <-  retrieval, toyworld  <-  lvmae (the CLI)

`foundation` imports no stage; `extract` and `pretrain` stand side by side and never import each other;
`toyworld` (the demo's data and stand-in weights) is imported only by the CLI, benchmarks and tests;
nothing in the tree imports the CLI. Every import counts, at module level or inside a function, and no
two files import each other, directly or round a longer circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("foundation", "store", "extract", "pretrain", "retrieval", "toyworld", "lvmae")
ALLOWED = {
    "foundation": {"foundation"},
    "store": {"foundation", "store"},
    "extract": {"foundation", "store", "extract"},
    "pretrain": {"foundation", "store", "pretrain"},
    "retrieval": {"foundation", "store", "extract", "pretrain", "retrieval"},
    "toyworld": {"foundation", "store", "extract", "toyworld"},
    "lvmae": set(PACKAGES),
}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules(root: Path) -> dict[str, Path]:
    return {module_name(p, root): p for package in PACKAGES for p in sorted((root / package).rglob("*.py"))}


def parse(path: Path) -> ast.Module:
    """`ast.parse` of the file, tried again on CPython 3.11's spurious "AST constructor recursion depth
    mismatch", a known CPython 3.11 fault outside this code (e.g. python/cpython#106905), seen once in
    a full `make test` and not again on its own."""
    for attempt in range(3):
        try:
            return ast.parse(path.read_text(), str(path))
        except SystemError as exc:
            if "recursion depth mismatch" not in str(exc) or attempt == 2:
                raise
    raise AssertionError("unreachable")


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
    return {m for m in found if m.split(".")[0] in PACKAGES and m in modules}


def graph(root: Path) -> dict[str, set[str]]:
    modules = project_modules(root)
    return {name: imports_of(path, name, modules) for name, path in modules.items()}


def upward_imports(edges: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{src} imports {dst}"
        for src, dsts in edges.items()
        for dst in dsts
        if dst.split(".")[0] not in ALLOWED[src.split(".")[0]]
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


def test_no_import_circles_between_files():
    assert circles(graph(ROOT)) == []


def test_the_floors_are_all_there():
    # A rename that empties a floor would make the checks above pass vacuously.
    floors = {name.split(".")[0] for name in graph(ROOT)}
    assert floors >= {"foundation", "store", "extract", "pretrain", "toyworld", "lvmae"}


@pytest.mark.parametrize(
    "file, line, broken",
    [
        ("foundation/progress.py", "from store import Store", "foundation.progress imports store"),
        (
            "store/verify.py",
            "from foundation.progress import bar\nfrom lvmae.commands.command import fail",
            "store.verify imports lvmae.commands.command",
        ),
        ("extract/encoder.py", "import toyworld.encoder", "extract.encoder imports toyworld.encoder"),
        ("pretrain/features.py", "from extract.work import FrozenModels", "pretrain.features imports extract.work"),
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
    path.write_text(path.read_text() + "\nfrom store.store import Store\n")
    assert any({"store.manifest", "store.store"} <= set(c) for c in circles(graph(copy)))


def _copy_tree(tmp_path: Path) -> Path:
    for package in PACKAGES:
        for source in (ROOT / package).rglob("*.py"):
            target = tmp_path / source.relative_to(ROOT)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(source.read_text())
    return tmp_path
