"""The pages and the artifact file route, as an APIRouter over the app's lineage store and Jinja2 templates (the
`store` dependency and `page` read them from app.state). Route functions carry no docstrings on purpose: FastAPI
would publish them as the OpenAPI descriptions."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, PlainTextResponse

from dermpipe.lineage.store import Artifact, Run, Store
from dermpipe.lineage.tree import LineageError, describe_code, lineage, render_lineage
from dermpipe.lineage.ui import cards
from dermpipe.lineage.ui.display import REPORT_TYPES, STATUS_CLASS, confusion_table, diff_params, report_title
from dermpipe.lineage.ui.files import file_response, local_view
from dermpipe.lineage.ui.graph import dag_svg, lineage_graph, run_dag_svg


async def get_store(request: Request) -> Store:
    # async, so FastAPI calls it on the event loop rather than sending every request through the thread pool
    return request.app.state.store


StoreDep = Annotated[Store, Depends(get_store)]
router = APIRouter()


def page(request: Request, name: str, **context: Any) -> HTMLResponse:
    state = request.app.state
    return state.templates.TemplateResponse(request, name, {"home": str(state.store.path.parent), **context})


def need_run(store: Store, run_id: str) -> Run:
    run = store.run(run_id) if store.exists() else None
    if run is None:
        raise HTTPException(404, f"no run {run_id!r} in the lineage store {store.path}")
    return run


def need_artifact(store: Store, artifact_id: int) -> Artifact:
    artifact = store.artifact(artifact_id) if store.exists() else None
    if artifact is None:
        raise HTTPException(404, f"no artifact {artifact_id} in the lineage store {store.path}")
    return artifact


def run_context(store: Store, run_id: str) -> dict[str, Any]:
    """run.html's context: the DAG, each task's inputs and outputs, the reports among the outputs."""
    run = need_run(store, run_id)
    task_rows = [{"task": t, "inputs": store.io(t.id, "input"), "outputs": store.io(t.id, "output")}
                 for t in store.tasks(run_id)]
    reports = [(report_title(row["task"].name, name, a), a) for row in task_rows for name, a in row["outputs"]
               if a.type in REPORT_TYPES]
    return {"run": run, "svg": run_dag_svg(store, run_id), "code": describe_code(run.code),
            "task_rows": task_rows, "headline": store.headline(run_id), "reports": reports,
            "status_class": STATUS_CLASS}


def artifact_context(store: Store, artifact_id: int) -> dict[str, Any]:
    """artifact.html's context: title, the tasks that wrote and read it, its local files, its confusion matrix."""
    artifact = need_artifact(store, artifact_id)
    producers = store.producers(artifact_id)
    title = report_title(producers[0].name, artifact.name, artifact) if producers else artifact.name
    return {"artifact": artifact, "title": title, "producers": producers, "consumers": store.consumers(artifact_id),
            **local_view(artifact), "confusion": confusion_table(artifact.metadata), "status_class": STATUS_CLASS}


def lineage_context(store: Store, ref: str) -> dict[str, Any]:
    """lineage.html's context: the deployed models to pick from without a ref, else the ref's graph and tree."""
    if not ref:
        models = store.model_versions() if store.exists() else []
        return {"ref": "", "answer": None, "svg": "", "tree": "", "models": models, "error": ""}
    try:
        answer = lineage(store, ref)
    except LineageError as err:
        return {"ref": ref, "answer": None, "svg": "", "tree": "", "models": [], "error": str(err)}
    svg = dag_svg(*lineage_graph(answer)) if answer["kind"] == "artifact" else run_dag_svg(store, ref)
    return {"ref": ref, "answer": answer, "svg": svg, "tree": render_lineage(answer), "models": [], "error": ""}


def compare_context(store: Store, a: str, b: str) -> dict[str, Any]:
    """compare.html's context: two runs' parameters, headline metrics, tasks and outputs side by side."""
    runs = [need_run(store, a), need_run(store, b)]
    heads = [store.headline(a), store.headline(b)]
    metrics = [(k, heads[0].get(k), heads[1].get(k)) for k in dict.fromkeys([*heads[0], *heads[1]])]
    tasks = [{t.name: t for t in store.tasks(r.run_id)} for r in runs]
    outputs = [{(t.name, n): art for t in store.tasks(r.run_id) for n, art in store.io(t.id, "output")}
               for r in runs]
    artifacts = [(key, outputs[0].get(key), outputs[1].get(key)) for key in dict.fromkeys([*outputs[0],
                                                                                        *outputs[1]])]
    return {"runs": runs, "params": diff_params(runs[0].params, runs[1].params), "metrics": metrics,
            "task_names": list(dict.fromkeys([*tasks[0], *tasks[1]])), "tasks": tasks, "artifacts": artifacts,
            "status_class": STATUS_CLASS}


@router.get("/", response_class=HTMLResponse)
def runs_page(request: Request, store: StoreDep):
    runs = store.runs() if store.exists() else []
    rows = [{"run": r, "headline": store.headline(r.run_id), "tasks": store.tasks(r.run_id)} for r in runs]
    return page(request, "runs.html", rows=rows, status_class=STATUS_CLASS)


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page(request: Request, run_id: str, store: StoreDep):
    return page(request, "run.html", **run_context(store, run_id))


@router.get("/artifacts/{artifact_id}", response_class=HTMLResponse)
def artifact_page(request: Request, artifact_id: int, store: StoreDep):
    return page(request, "artifact.html", **artifact_context(store, artifact_id))


@router.get("/files/{artifact_id}")
@router.get("/files/{artifact_id}/{relative:path}")
def artifact_file(artifact_id: int, store: StoreDep, relative: str = ""):
    return file_response(need_artifact(store, artifact_id), relative)


@router.get("/lineage", response_class=HTMLResponse)
def lineage_page(request: Request, store: StoreDep, ref: str = ""):
    return page(request, "lineage.html", **lineage_context(store, ref))


@router.get("/compare", response_class=HTMLResponse)
def compare_page(request: Request, a: str, b: str, store: StoreDep):
    return page(request, "compare.html", **compare_context(store, a, b))


@router.get("/models", response_class=HTMLResponse)
def models_page(request: Request, store: StoreDep):
    return page(request, "models.html", versions=cards.versions(store))


@router.get("/models/{model_name}/{version}/{which}")
def model_card(model_name: str, version: int, which: str, store: StoreDep):
    if which not in cards.CARD_FILES:
        raise HTTPException(404, f"no {which!r} for a model version; ask for card or card.json")
    return cards.card_response(store, model_name, version, cards.CARD_FILES[which])


@router.get("/healthz", response_class=PlainTextResponse)
def healthz():
    return "ok"
