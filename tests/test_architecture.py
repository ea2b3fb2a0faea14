"""The package's modules import each other without circles.

Every runtime import between llmasos modules counts — at module level and inside functions
(a deferred import still couples the two modules) — except those under ``if TYPE_CHECKING:``,
which never run. Read from the source with :mod:`ast`; nothing is imported.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

PACKAGE = Path(__file__).parents[1] / "llmasos"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def runtime_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Import statements that can run: everything but the bodies of ``if TYPE_CHECKING:``."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        if isinstance(node, ast.If) and _type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def imported(node: ast.Import | ast.ImportFrom, importer: str, is_package: bool, known: set[str]) -> set[str]:
    """The llmasos modules an import statement loads (``from . import x`` loads module ``x`` when
    there is one, else the package that defines ``x``)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        if node.level:
            base = importer.split(".") if is_package else importer.split(".")[:-1]
            base = base[:len(base) - node.level + 1]
            prefix = ".".join(base + ([node.module] if node.module else []))
        else:
            prefix = node.module or ""
        names = [f"{prefix}.{alias.name}" if f"{prefix}.{alias.name}" in known else prefix for alias in node.names]
    targets = set()
    for name in names:
        # importing a.b.c runs a, a.b and a.b.c; the package __init__s on the way count as well
        parts = name.split(".")
        for end in range(1, len(parts) + 1):
            candidate = ".".join(parts[:end])
            if candidate in known and candidate != importer:
                targets.add(candidate)
    return targets


def import_graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    graph: dict[str, set[str]] = {}
    for name, path in found.items():
        tree = ast.parse(path.read_text(), str(path))
        is_package = path.name == "__init__.py"
        edges = set()
        for node in runtime_imports(tree):
            edges |= imported(node, name, is_package, known)
        # a module's parent packages run before it, but they are not its choice: drop those edges
        graph[name] = {t for t in edges if not name.startswith(t + ".")}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return sorted(components)


def edges_within(component: list[str], graph: dict[str, set[str]]) -> list[str]:
    members = set(component)
    return [f"{a} -> {b}" for a in component for b in sorted(graph[a] & members)]


def test_the_graph_counts_function_level_imports_and_skips_type_checking():
    tree = ast.parse(textwrap.dedent("""
        from typing import TYPE_CHECKING
        from . import a
        if TYPE_CHECKING:
            from .b import B
        else:
            from . import d
        def f():
            from .c import C
    """))
    known = {"llmasos", "llmasos.x", "llmasos.a", "llmasos.b", "llmasos.c", "llmasos.d"}
    targets = set().union(*(imported(node, "llmasos.x", False, known) for node in runtime_imports(tree)))
    assert targets == {"llmasos", "llmasos.a", "llmasos.c", "llmasos.d"}
    assert cycles({"p": {"q"}, "q": {"r"}, "r": {"p"}, "s": {"p"}}) == [["p", "q", "r"]]


def test_no_import_cycles():
    graph = import_graph()
    found = cycles(graph)
    report = "\n\n".join(f"cycle of {len(c)} modules: {', '.join(c)}\n  " + "\n  ".join(edges_within(c, graph))
                         for c in found)
    print(report)
    assert not found, f"import cycles in llmasos:\n{report}"
