"""DAG drawings as inline SVG: a longest-path layering, boxes with links and arrows between them; a run's tasks and
an artifact's lineage as such graphs. Pure helpers apart from run_dag_svg, which reads the store (unit-tested)."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from dermpipe.lineage.store import Store, Task
from dermpipe.lineage.ui.display import STATUS_CLASS


@dataclass(frozen=True)
class GraphNode:
    id: str
    label: str
    sub: str = ""
    css: str = ""
    href: str = ""


def levels(nodes: Sequence[str], edges: Iterable[tuple[str, str]]) -> dict[str, int]:
    """Longest-path layer of each node in a DAG (sources at 0); nodes on a cycle keep their last layer."""
    level = dict.fromkeys(nodes, 0)
    edges = [(a, b) for a, b in edges if a in level and b in level]
    for _ in range(len(level)):
        changed = False
        for a, b in edges:
            if level[b] < level[a] + 1:
                level[b], changed = level[a] + 1, True
        if not changed:
            break
    return level


def dag_svg(nodes: Sequence[GraphNode], edges: Iterable[tuple[str, str]], *, width: int = 150, height: int = 46,
            gap_x: int = 60, gap_y: int = 22) -> str:
    """A layered left-to-right drawing of a DAG as inline SVG: boxes (with links), arrows between them."""
    edges = list(edges)
    layer = levels([n.id for n in nodes], edges)
    columns: dict[int, list[GraphNode]] = {}
    for node in nodes:
        columns.setdefault(layer[node.id], []).append(node)
    pos = {}
    for col, members in columns.items():
        for row, node in enumerate(members):
            pos[node.id] = (10 + col * (width + gap_x), 10 + row * (height + gap_y))
    total_w = 20 + (max(columns, default=0) + 1) * (width + gap_x) - gap_x
    total_h = 20 + max((len(m) for m in columns.values()), default=1) * (height + gap_y) - gap_y
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="dag" width="{total_w}" height="{total_h}" '
             f'viewBox="0 0 {total_w} {total_h}" role="img">',
             '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
             'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#667"/></marker></defs>']
    for a, b in edges:
        if a in pos and b in pos:
            (x1, y1), (x2, y2) = pos[a], pos[b]
            sx, sy, ex, ey = x1 + width, y1 + height / 2, x2, y2 + height / 2
            mid = (sx + ex) / 2
            parts.append(f'<path class="edge" d="M {sx} {sy} C {mid} {sy}, {mid} {ey}, {ex} {ey}" fill="none" '
                         'stroke="#667" stroke-width="1.4" marker-end="url(#arrow)"/>')
    for node in nodes:
        x, y = pos[node.id]
        box = (f'<g class="node {html.escape(node.css)}" data-node="{html.escape(node.id)}">'
               f'<rect x="{x}" y="{y}" width="{width}" height="{height}" rx="7"/>'
               f'<text x="{x + width / 2}" y="{y + 19}" text-anchor="middle" class="name">'
               f'{html.escape(_clip(node.label, 22))}</text>'
               f'<text x="{x + width / 2}" y="{y + 36}" text-anchor="middle" class="sub">'
               f'{html.escape(_clip(node.sub, 26))}</text></g>')
        parts.append(f'<a href="{html.escape(node.href)}">{box}</a>' if node.href else box)
    parts.append("</svg>")
    return "".join(parts)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def task_graph_node(task: Task) -> GraphNode:
    status = "cached" if task.cached else STATUS_CLASS.get(task.status, task.status)
    sub = f"{task.status} · {task.seconds:.1f}s" + (" · cache hit" if task.cached else "")
    return GraphNode(f"t{task.id}", task.name, sub, status, f"#task-{task.name}")


def run_dag_svg(store: Store, run_id: str) -> str:
    """A run's tasks as a DAG: an edge wherever a task reads an artifact another task of the run wrote."""
    tasks = store.tasks(run_id)
    by_name = {t.name: f"t{t.id}" for t in tasks}
    edges = [(by_name[a], by_name[b]) for a, b in store.task_edges(run_id)]
    return dag_svg([task_graph_node(t) for t in tasks], edges)


def lineage_graph(answer: dict[str, Any]) -> tuple[list[GraphNode], list[tuple[str, str]]]:
    """Nodes and producer→consumer edges of a `lineage_tree.lineage` answer for an artifact."""
    nodes: dict[str, GraphNode] = {}
    edges: set[tuple[str, str]] = set()

    def add(node: dict[str, Any]) -> str:
        if node["kind"] == "artifact":
            key = f"a{node['id']}"
            nodes.setdefault(key, GraphNode(key, node["name"], node["type"].split(".")[-1], "artifact",
                                            f"/artifacts/{node['id']}"))
        else:
            key = f"t{node['id']}"
            css = "cached" if node["cached"] else STATUS_CLASS.get(node["status"], "")
            nodes.setdefault(key, GraphNode(key, node["name"], node["run_id"][-15:], css,
                                            f"/runs/{node['run_id']}#task-{node['name']}"))
        return key

    def walk_up(node: dict[str, Any]) -> None:
        me = add(node)
        for child in node["children"]:
            edges.add((add(child), me))
            walk_up(child)

    def walk_down(node: dict[str, Any]) -> None:
        me = add(node)
        for child in node["children"]:
            edges.add((me, add(child)))
            walk_down(child)

    walk_up(answer["upstream"])
    walk_down(answer["downstream"])
    return list(nodes.values()), sorted(edges)
