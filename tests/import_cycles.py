"""Find import cycles inside dermpipe's folders, on the mirror tests/lint_layers.py builds (components/ and pipelines/
as real subpackages, so they are checked too).

import-linter's layers contract orders the top-level layers; inside a folder nothing orders the modules, so two of
them can import each other (directly or through others) and neither can be understood, tested or moved alone. For
every package this builds the graph of its direct children (module or sub-package; an edge when anything inside one
imports anything inside the other, lazy and TYPE_CHECKING imports included) and reports each cycle. Any cycle between
two modules shows up here, at the innermost package that holds both.

    python tests/import_cycles.py          # prints the cycles; exit 1 when one is not in KNOWN
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lint_layers import REPO, build_mirror  # noqa: E402 (tests/lint_layers.py)

# Cycles known and owned by another change: package -> why and what breaks it. tests/architecture/test_import_cycles.py
# fails when one of them is gone, so the entry is removed with the fix.
KNOWN: dict[str, str] = {}  # package -> why its cycle is still there (none left)


def sibling_edges(graph, package: str) -> dict[str, set[str]]:
    """child -> the children of `package` it imports, each child standing for everything inside it."""
    def child(module: str) -> str | None:
        if not module.startswith(package + "."):
            return None
        return f"{package}.{module[len(package) + 1:].split('.')[0]}"

    edges: dict[str, set[str]] = defaultdict(set)
    for module in graph.find_descendants(package):
        source = child(module)
        for imported in graph.find_modules_directly_imported_by(module):
            target = child(imported)
            if target and target != source:
                edges[source].add(target)
    return edges


def strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one member: each is one or more cycles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(edges.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while component[-1:] != [node]:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def cycles_in(graph, root: str = "dermpipe") -> dict[str, list[list[str]]]:
    """package -> its children's cycles, for every package under `root` (and `root`)."""
    packages = [root, *sorted(m for m in graph.find_descendants(root) if graph.find_children(m))]
    return {p: found for p in packages if (found := strongly_connected(sibling_edges(graph, p)))}


def find_cycles(mirror: Path) -> dict[str, list[list[str]]]:
    """cycles_in() on the mirror's package, in a child process that imports the mirror ahead of the install."""
    code = ("import json, sys, grimp; sys.path.insert(0, sys.argv[1]); from import_cycles import cycles_in; "
            "print(json.dumps(cycles_in(grimp.build_graph('dermpipe', cache_dir=None))))")
    env = {**os.environ, "PYTHONPATH": str(mirror)}
    done = subprocess.run([sys.executable, "-c", code, str(Path(__file__).resolve().parent)], cwd=mirror, env=env,
                          capture_output=True, text=True, timeout=300)
    if done.returncode:
        raise RuntimeError(f"import-cycle check on {mirror} failed:\n{done.stderr}")
    return json.loads(done.stdout)


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        found = find_cycles(build_mirror(REPO, Path(tmp)))
    for package, components in found.items():
        for component in components:
            print(f"{package}: {' <-> '.join(component)}" + (" (known: see KNOWN)" if package in KNOWN else ""))
    new = sorted(set(found) - set(KNOWN))
    print(f"import cycles: {len(found)} package(s), {len(new)} not known")
    return 1 if new else 0


if __name__ == "__main__":
    sys.exit(main())
