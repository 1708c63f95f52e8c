"""The package's layers, checked from the source: the command line is a thin layer over the library
(nothing below ``longtail.cli`` imports it, and it holds under 20% of the lines), and no module imports
itself back through others, not even through an import inside a function."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "longtail"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """The longtail modules ``path`` imports anywhere in its body (``from .x import y`` counts ``.x.y`` when
    that is a module, else ``.x``)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            targets = [f"{prefix}.{alias.name}" if f"{prefix}.{alias.name}" in known else prefix for alias in node.names]
        else:
            continue
        out.update(t for t in targets if t in known and t != name)
    return out


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    known = set(files)
    edges = {name: imported_modules(path, known) for name, path in files.items()}
    # a package's __init__ re-exporting its modules is not a dependency of those modules on each other
    return {name: {t for t in targets if not name.startswith(t + ".")} for name, targets in edges.items()}


def test_nothing_below_the_command_line_imports_it():
    offenders = sorted(f"{name} imports {t}" for name, targets in graph().items() if not name.startswith("longtail.cli")
                       for t in targets if t.startswith("longtail.cli"))
    assert not offenders, offenders


def test_no_import_cycles():
    edges = graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_the_command_line_is_under_a_fifth_of_the_package():
    lines = {p: len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    cli = sum(n for p, n in lines.items() if "cli" in p.relative_to(PACKAGE).parts[:1])
    assert cli < 0.2 * sum(lines.values()), f"cli/ holds {cli} of {sum(lines.values())} lines"
