"""`dermpipe ui`: a small local web app over the lineage store (FastAPI, server-rendered Jinja2 pages, inline SVG).

Pages: runs list (/), a run with its DAG (/runs/{run id}), an artifact (/artifacts/{id}) with its report, confusion
matrix, gallery or files, a lineage graph (/lineage?ref=...), two runs side by side (/compare?a=...&b=...).
Artifact files are served from /files/{artifact id}/{path}, only inside that artifact's own local file or folder.
"""

from __future__ import annotations

import html
import json
import mimetypes
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, PlainTextResponse
from fastapi.templating import Jinja2Templates

from dermpipe.lineage.store import Artifact, Store, Task
from dermpipe.lineage.tree import describe_code, plain

TEMPLATES = Path(__file__).parent / "ui_templates"
STATUS_CLASS = {"success": "ok", "failure": "bad", "running": "running", "succeeded": "ok", "failed": "bad"}
REPORT_TITLES = {("evaluate", "report"): "Evaluation report", ("explain", "gallery"): "Grad-CAM gallery",
                 ("merge", "report"): "Data report", ("gate", "decision"): "Deployment decision",
                 ("evaluate", "confusion"): "Confusion matrix"}
REPORT_TYPES = ("system.HTML", "system.Markdown")
# HTML artifacts are shown in a sandboxed frame: no scripts, nothing fetched from elsewhere.
HTML_CSP = "sandbox; default-src 'none'; img-src data: 'self'; style-src 'unsafe-inline'; font-src data:"


# ---------------------------------------------------------------- pure helpers (unit-tested)

class UnsafePath(ValueError):
    """A requested file path that leaves the artifact it was asked under."""


def safe_path(root: Path, relative: str) -> Path:
    """root/relative, refusing anything that resolves outside root (.., absolute paths, symlinks out)."""
    base = root.resolve()
    target = (base / relative).resolve() if relative else base
    if target != base and not target.is_relative_to(base):
        raise UnsafePath(f"{relative!r} is outside the artifact folder {base}")
    return target


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


def confusion_table(metadata: dict[str, Any]) -> dict[str, Any] | None:
    """{'labels': [...], 'rows': [[...]]} from a ClassificationMetrics artifact's confusionMatrix metadata."""
    matrix = metadata.get("confusionMatrix")
    if not matrix:
        return None
    labels = [spec.get("displayName", "") for spec in matrix.get("annotationSpecs", [])]
    rows = [[int(v) for v in row.get("row", [])] for row in matrix.get("rows", [])]
    return {"labels": labels, "rows": rows, "max": max((max(r) for r in rows if r), default=0)}


def diff_params(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[str, Any, Any, bool]]:
    """(name, value in a, value in b, differs) over the union of two runs' parameters."""
    keys = list(dict.fromkeys([*a, *b]))
    return [(k, a.get(k, ""), b.get(k, ""), a.get(k) != b.get(k)) for k in keys]


def report_title(task: str, output: str, artifact: Artifact) -> str:
    if (task, output) in REPORT_TITLES:
        return REPORT_TITLES[(task, output)]
    if "drift" in f"{task} {output} {artifact.uri}".lower():
        return "Drift report"
    return f"{task} · {output}"


# ---------------------------------------------------------------- the app

def create_app(store: Store | None = None) -> FastAPI:
    """The FastAPI app over a lineage store (default: $DERMPIPE_HOME/lineage.sqlite)."""
    store = store or Store()
    templates = Jinja2Templates(directory=str(TEMPLATES))
    templates.env.filters["plain"] = plain
    templates.env.filters["tojson_pretty"] = lambda v: json.dumps(v, indent=1, sort_keys=True, default=str)
    app = FastAPI(title="dermpipe", docs_url=None, redoc_url=None)

    def page(request: Request, name: str, **context: Any) -> HTMLResponse:
        return templates.TemplateResponse(request, name, {"home": str(store.path.parent), **context})

    def need_run(run_id: str):
        run = store.run(run_id) if store.exists() else None
        if run is None:
            raise HTTPException(404, f"no run {run_id!r} in the lineage store {store.path}")
        return run

    def need_artifact(artifact_id: int) -> Artifact:
        artifact = store.artifact(artifact_id) if store.exists() else None
        if artifact is None:
            raise HTTPException(404, f"no artifact {artifact_id} in the lineage store {store.path}")
        return artifact

    @app.get("/", response_class=HTMLResponse)
    def runs_page(request: Request):
        runs = store.runs() if store.exists() else []
        rows = [{"run": r, "headline": store.headline(r.run_id), "tasks": store.tasks(r.run_id)} for r in runs]
        return page(request, "runs.html", rows=rows, status_class=STATUS_CLASS)

    @app.get("/runs/{run_id}", response_class=HTMLResponse)
    def run_page(request: Request, run_id: str):
        run = need_run(run_id)
        tasks = store.tasks(run_id)
        svg = run_dag_svg(store, run_id)
        task_rows = [{"task": t, "inputs": store.io(t.id, "input"), "outputs": store.io(t.id, "output")}
                     for t in tasks]
        reports = [(report_title(row["task"].name, name, a), a) for row in task_rows for name, a in row["outputs"]
                   if a.type in REPORT_TYPES]
        return page(request, "run.html", run=run, svg=svg, code=describe_code(run.code), task_rows=task_rows,
                    headline=store.headline(run_id), reports=reports, status_class=STATUS_CLASS)

    @app.get("/artifacts/{artifact_id}", response_class=HTMLResponse)
    def artifact_page(request: Request, artifact_id: int):
        artifact = need_artifact(artifact_id)
        producers = store.producers(artifact_id)
        title = report_title(producers[0].name, artifact.name, artifact) if producers else artifact.name
        path = Path(artifact.uri)
        local = not artifact.uri.startswith(("gs://", "s3://", "http")) and path.exists()
        files = sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())[:200] \
            if local and path.is_dir() else []
        text = path.read_text(errors="replace")[:200_000] if local and path.is_file() and \
            artifact.type == "system.Markdown" else ""
        return page(request, "artifact.html", artifact=artifact, title=title, producers=producers,
                    consumers=store.consumers(artifact_id), local=local, is_file=local and path.is_file(),
                    files=files, images=[f for f in files if f.lower().endswith((".png", ".jpg", ".jpeg"))],
                    text=text, confusion=confusion_table(artifact.metadata),
                    status_class=STATUS_CLASS)

    @app.get("/files/{artifact_id}")
    @app.get("/files/{artifact_id}/{relative:path}")
    def artifact_file(artifact_id: int, relative: str = ""):
        artifact = need_artifact(artifact_id)
        root = Path(artifact.uri)
        if artifact.uri.startswith(("gs://", "s3://", "http")) or not root.exists():
            raise HTTPException(404, f"artifact {artifact_id} is not a local file: {artifact.uri}")
        try:
            target = safe_path(root, relative) if root.is_dir() else root
        except UnsafePath as err:
            raise HTTPException(403, str(err)) from err
        if root.is_file() and relative:
            raise HTTPException(404, f"artifact {artifact_id} is a single file; no {relative!r} under it")
        if not target.is_file():
            raise HTTPException(404, f"no file {relative!r} in artifact {artifact_id} ({artifact.uri})")
        media = "text/html" if artifact.type == "system.HTML" and target == root else \
            mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        if media == "application/octet-stream" and artifact.type in ("system.Markdown", "system.Metrics",
                                                               "system.ClassificationMetrics"):
            media = "text/plain"
        return FileResponse(target, media_type=media, headers={"Content-Security-Policy": HTML_CSP,
                                                               "X-Content-Type-Options": "nosniff"})

    @app.get("/lineage", response_class=HTMLResponse)
    def lineage_page(request: Request, ref: str = ""):
        from dermpipe.lineage.tree import LineageError, lineage, render_lineage

        if not ref:
            models = store.model_versions() if store.exists() else []
            return page(request, "lineage.html", ref="", answer=None, svg="", tree="", models=models, error="")
        try:
            answer = lineage(store, ref)
        except LineageError as err:
            return page(request, "lineage.html", ref=ref, answer=None, svg="", tree="", models=[], error=str(err))
        svg = dag_svg(*lineage_graph(answer)) if answer["kind"] == "artifact" else run_dag_svg(store, ref)
        return page(request, "lineage.html", ref=ref, answer=answer, svg=svg, tree=render_lineage(answer),
                    models=[], error="")

    @app.get("/compare", response_class=HTMLResponse)
    def compare_page(request: Request, a: str, b: str):
        runs = [need_run(a), need_run(b)]
        heads = [store.headline(a), store.headline(b)]
        metrics = [(k, heads[0].get(k), heads[1].get(k)) for k in dict.fromkeys([*heads[0], *heads[1]])]
        tasks = [{t.name: t for t in store.tasks(r.run_id)} for r in runs]
        outputs = [{(t.name, n): art for t in store.tasks(r.run_id) for n, art in store.io(t.id, "output")}
                   for r in runs]
        artifacts = [(key, outputs[0].get(key), outputs[1].get(key)) for key in dict.fromkeys([*outputs[0],
                                                                                            *outputs[1]])]
        return page(request, "compare.html", runs=runs, params=diff_params(runs[0].params, runs[1].params),
                    metrics=metrics, task_names=list(dict.fromkeys([*tasks[0], *tasks[1]])), tasks=tasks,
                    artifacts=artifacts, status_class=STATUS_CLASS)

    @app.get("/healthz", response_class=PlainTextResponse)
    def healthz():
        return "ok"

    return app
