"""The package's structure, read from its source: imports run one way (no cycle among
kldiv_cli's modules, counting imports inside functions and under ``TYPE_CHECKING``),
no module imports another module's private (``_name``) names, and no code outside
``kldiv_cli/io`` decides anything by a file extension (the format registry does).

An import is resolved as Python resolves it: ``from PKG import NAME`` imports the
module ``PKG.NAME`` when there is one, else ``PKG`` (the names of its ``__init__``).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import kldiv_cli

ROOT = Path(kldiv_cli.__file__).parent

#: Cycles and private imports that another room is removing this session, each with the
#: modules it joins. Empty when the package is clean; an entry that no longer occurs fails
#: the test (see :func:`test_known_exceptions_still_occur`), so none outlives its fix.
KNOWN_CYCLES: set[frozenset[str]] = set()
KNOWN_EXTENSIONS: set[tuple[str, str]] = set()
KNOWN_PRIVATE: set[tuple[str, str, str]] = set()


def _module_name(path: Path) -> str:
    parts = ["kldiv_cli", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


MODULES = _modules()


def _package(name: str) -> str:
    """The package a module's relative imports start from."""
    is_package = MODULES[name].name == "__init__.py"
    return name if is_package else name.rpartition(".")[0]


@dataclass(frozen=True)
class Scan:
    """What a module's source says, read in one walk of its syntax tree."""

    #: ``(imported module, names taken from it)`` for every import statement, wherever
    #: it stands (top level, functions, ``if TYPE_CHECKING``).
    imports: tuple[tuple[str, tuple[str, ...]], ...]
    #: Its string constants.
    strings: frozenset[str]
    #: Whether it calls ``importlib.import_module``.
    by_name: bool


def _scan_tree(tree: ast.AST, package: str) -> Scan:
    imports: list[tuple[str, tuple[str, ...]]] = []
    strings: set[str] = set()
    by_name = False
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            strings.add(node.value)
        elif isinstance(node, ast.Import):
            imports += [(alias.name, ()) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{anchor}.{base}" if base else anchor
            imports.append((base, tuple(alias.name for alias in node.names)))
        elif isinstance(node, ast.Attribute) and node.attr == "import_module":
            by_name = True
    return Scan(tuple(imports), frozenset(strings), by_name)


@cache
def _scan(name: str) -> Scan:
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    return _scan_tree(tree, _package(name))


#: The modules that import other modules by name (``importlib.import_module``), which no
#: import statement spells out and this scan does not follow: the package's lazy public
#: names, the CLI's commands (each registers itself on ``cli.app``'s application), the
#: formats' modules (``io.formats``). Any other module must spell out its imports.
IMPORTS_BY_NAME = {"kldiv_cli", "kldiv_cli.cli.app", "kldiv_cli.io.formats"}


@cache
def _edges(name: str) -> frozenset[str]:
    """The kldiv_cli modules that module ``name`` imports."""
    out: set[str] = set()
    for base, names in _scan(name).imports:
        if not base.startswith("kldiv_cli"):
            continue
        submodules = [f"{base}.{n}" for n in names if f"{base}.{n}" in MODULES]
        out.update(submodules)
        if len(submodules) < len(names) or not names:
            out.add(base)
    out.discard(name)
    return frozenset(out)


def _cycles() -> set[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    graph = {name: _edges(name) & MODULES.keys() for name in MODULES}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: set[frozenset[str]] = set()

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.add(frozenset(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _private_imports() -> set[tuple[str, str, str]]:
    """``(importer, module, name)`` for each ``_name`` taken from another kldiv_cli module
    (dunder names such as ``__version__`` are public)."""
    found = set()
    for name in MODULES:
        for base, names in _scan(name).imports:
            if not base.startswith("kldiv_cli") or base == name:
                continue
            for n in names:
                if n.startswith("_") and not n.startswith("__"):
                    found.add((name, base, n))
    return found


def _known_extensions() -> set[str]:
    """The read formats and output kinds of io's registry, and the report pages."""
    from kldiv_cli.io import formats

    read = {e for f in formats.REGISTRY for e in f.extensions}
    return {*read, *formats.OUTPUT_EXTENSIONS, ".html", ".htm", ".xml", ".toml"}


def _literals(scan: Scan, known: set[str]) -> set[str]:
    """The strings of a module that are a file extension (``".parquet"``, ``"*.csv"``);
    prose (help, messages) may name extensions."""
    return {text for text in scan.strings if text.lower().lstrip("*") in known}


def _extension_literals() -> set[tuple[str, str]]:
    """``(module, literal)`` for each extension in code outside ``kldiv_cli.io``."""
    known = _known_extensions()
    return {
        (name, text)
        for name in MODULES
        if not name.startswith("kldiv_cli.io")
        for text in _literals(_scan(name), known)
    }


def test_the_scan_sees_the_package() -> None:
    """The test can fail: it finds the modules, and the imports that join them."""
    assert len(MODULES) > 40
    assert "kldiv_cli.core.engine" in _edges("kldiv_cli.core.kl")
    # A function's import counts: the CLI's commands import their jobs inside functions.
    assert "kldiv_cli.jobs.compute" in _edges("kldiv_cli.cli.compute")
    code = ast.parse('if path.lower().endswith((".PARQUET", "*.tsv")): help = "a .csv file"')
    assert _literals(_scan_tree(code, "kldiv_cli"), _known_extensions()) == {".PARQUET", "*.tsv"}


def test_imports_by_name_only_in_the_registries() -> None:
    """A module importing by name hides that import from the cycle check: only the
    registries of :data:`IMPORTS_BY_NAME` may."""
    assert {name for name in MODULES if _scan(name).by_name} == IMPORTS_BY_NAME


def test_no_import_cycle() -> None:
    cycles = _cycles() - KNOWN_CYCLES
    shown = ["  " + " <-> ".join(sorted(c)) for c in cycles]
    assert not cycles, "import cycles among kldiv_cli's modules:\n" + "\n".join(shown)


def test_no_private_name_crosses_a_module() -> None:
    private = _private_imports() - KNOWN_PRIVATE
    shown = [f"  {a} imports {n} from {b}" for a, b, n in sorted(private)]
    assert not private, "private names imported across modules:\n" + "\n".join(shown)


def test_no_extension_outside_io() -> None:
    literals = _extension_literals() - KNOWN_EXTENSIONS
    shown = [f"  {name}: {text!r}" for name, text in sorted(literals)]
    assert not literals, "extensions outside kldiv_cli/io:\n" + "\n".join(shown)


def test_known_exceptions_still_occur() -> None:
    """An exception listed above that is gone must leave the list."""
    assert KNOWN_CYCLES <= _cycles()
    assert KNOWN_PRIVATE <= _private_imports()
    assert KNOWN_EXTENSIONS <= _extension_literals()
