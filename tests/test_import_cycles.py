"""No import cycles between the modules of ``tfnas``, at any depth.

Every module under ``tfnas/`` is parsed with :mod:`ast`; every ``import`` and
``from … import`` counts, wherever it stands (module level, inside functions,
under ``if TYPE_CHECKING``), so a cycle cannot hide in a function-level
import. A package's ``__init__`` is a module of its own. Edges follow what
Python executes:

- ``import a.b.c`` and ``from a.b.c import x`` depend on ``a.b.c`` and on the
  packages ``a`` and ``a.b`` that Python initialises first, except those that
  enclose the importing module (they are already being initialised);
- ``from a.b import c``, where ``a.b.c`` is a module, depends on ``a.b.c``
  (and its enclosing packages as above); where ``c`` is a name defined in
  ``a/b/__init__.py``, on ``a.b`` itself, even if ``a.b`` encloses the
  importer: reading a name from a package that is still being initialised is
  the classic partial-import failure.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tfnas.paths import REPO_ROOT

PACKAGE = "tfnas"


def _modules(root: Path) -> dict[str, Path]:
    out = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _enclosing(module: str) -> set[str]:
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def _with_parents(target: str, importer: str, modules: dict[str, Path]) -> set[str]:
    """``target`` and the packages Python initialises before it, minus those enclosing the importer."""
    parts = target.split(".")
    chain = {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
    return {m for m in chain if m in modules} - _enclosing(importer)


def _resolve_relative(importer: str, is_package: bool, level: int, module: str | None) -> str:
    base = importer.split(".")
    if not is_package:
        base = base[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the tfnas modules it imports (see the module docstring for the edges)."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    deps |= _with_parents(alias.name, name, modules)
            elif isinstance(node, ast.ImportFrom):
                source = (
                    _resolve_relative(name, _is_package(path), node.level, node.module)
                    if node.level
                    else node.module
                )
                if not source:
                    continue
                for alias in node.names:
                    sub = f"{source}.{alias.name}"
                    if sub in modules:
                        deps |= _with_parents(sub, name, modules)
                    else:
                        deps |= _with_parents(source, name, modules)
                        if source in modules:
                            deps.add(source)  # a name read from a package, even an enclosing one
        deps.discard(name)
        graph[name] = {d for d in deps if d.split(".")[0] == PACKAGE}
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_the_cycle_finder_sees_function_level_and_package_imports(tmp_path):
    pkg = tmp_path / PACKAGE
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from tfnas import b\n")
    (pkg / "b.py").write_text("import tfnas.a\n")
    (pkg / "sub" / "__init__.py").write_text("from tfnas.sub import leaf\nHELPER = 1\n")
    (pkg / "sub" / "leaf.py").write_text("from tfnas.sub import HELPER\n")
    (pkg / "sub" / "ok.py").write_text("from tfnas.sub import leaf\n")
    (pkg / "c.py").write_text("from tfnas.sub.ok import x\n")
    graph = imports(_modules(tmp_path))
    assert graph["tfnas.c"] == {"tfnas.sub", "tfnas.sub.ok"}
    assert graph["tfnas.sub.ok"] == {"tfnas.sub.leaf"}  # its own package is not a dependency
    assert sorted(find_cycles(graph)) == [["tfnas.a", "tfnas.b"], ["tfnas.sub", "tfnas.sub.leaf"]]


def test_tfnas_has_no_import_cycles():
    modules = _modules(REPO_ROOT)
    assert "tfnas.scoring.engine" in modules and "tfnas.scoring" in modules
    cycles = find_cycles(imports(modules))
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)
