"""Lineage graphs from the local store: what produced an artifact (upstream), what consumed it (downstream), what a
run read and wrote; as plain dicts (for `--json` and the UI) and as a terminal tree."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from dermpipe.lineage.store import Artifact, Store, Task

# Artifact metadata worth a glance in a tree line (the full metadata is in --json and the UI).
SUMMARY_KEYS = ("n_images", "rows", "split", "class_counts", "epochs_run", "balanced_accuracy", "blessed",
                "model_name", "version", "registry_uri", "source")
MODEL_REF = re.compile(r"^model:(?P<name>[^/]+)/(?P<version>\d+)$")


class LineageError(LookupError):
    """A reference that names nothing in the lineage store."""


def artifact_node(artifact: Artifact, role: str) -> dict[str, Any]:
    meta = artifact.metadata
    return {"kind": "artifact", "role": role, "id": artifact.id, "name": artifact.name, "type": artifact.type,
            "uri": artifact.uri, "hash": artifact.hash, "code_version": meta.get("code_version", ""),
            "summary": {k: meta[k] for k in SUMMARY_KEYS if k in meta}, "metadata": meta, "children": []}


def task_node(task: Task, role: str, code_version: str = "") -> dict[str, Any]:
    return {"kind": "task", "role": role, "id": task.id, "run_id": task.run_id, "name": task.name,
            "status": task.status, "cached": task.cached, "seconds": task.seconds, "started": task.started,
            "params": task.params, "code_version": code_version, "error": task.error, "children": []}


def _code_version(store: Store, task: Task) -> str:
    versions = {a.metadata.get("code_version", "") for _, a in store.io(task.id, "output")} - {""}
    return ", ".join(sorted(versions))


def _first_visit(node: dict[str, Any], seen: set[str]) -> bool:
    """Marks a node met before (drawn once, later mentions say so); True the first time."""
    key = f"{node['kind']}{node['id']}"
    if key in seen:
        node["repeated"] = True
        return False
    seen.add(key)
    return True


def upstream(store: Store, artifact: Artifact, seen: set[str] | None = None, role: str = "artifact") -> dict:
    """The artifact, the task that first wrote it, that task's inputs, and so on back to the sources."""
    seen = set() if seen is None else seen
    node = artifact_node(artifact, role)
    producers = store.producers(artifact.id)
    if _first_visit(node, seen) and producers:
        first = producers[0]
        code = run.code if (run := store.run(first.run_id)) else {}
        task = task_node(first, "produced by", _code_version(store, first) or code.get("code_version", ""))
        task["git_commit"] = code.get("git_commit", "")
        task["reused_by_runs"] = sorted({t.run_id for t in producers[1:] if t.run_id != first.run_id})
        if _first_visit(task, seen):
            task["children"] = [upstream(store, a, seen, f"input {name}") for name, a in store.io(first.id, "input")]
        node["children"].append(task)
    return node


def downstream(store: Store, artifact: Artifact, seen: set[str] | None = None, role: str = "artifact") -> dict:
    """The artifact, every task (in any run) that read it, their outputs, and so on."""
    seen = set() if seen is None else seen
    node = artifact_node(artifact, role)
    if not _first_visit(node, seen):
        return node
    for consumer in store.consumers(artifact.id):
        task = task_node(consumer, "consumed by", _code_version(store, consumer))
        if _first_visit(task, seen):
            task["children"] = [downstream(store, a, seen, f"output {name}")
                                for name, a in store.io(consumer.id, "output")]
        node["children"].append(task)
    return node


def run_graph(store: Store, run_id: str) -> dict[str, Any]:
    """A run: its tasks with their inputs and outputs; where outputs came from an earlier run (cache) and which
    other runs read them."""
    run = store.run(run_id)
    assert run is not None
    tasks = []
    for task in store.tasks(run_id):
        node = task_node(task, "task", _code_version(store, task))
        for direction in ("input", "output"):
            for name, artifact in store.io(task.id, direction):
                child = artifact_node(artifact, f"{direction} {name}")
                producers = store.producers(artifact.id)
                if producers and producers[0].run_id != run_id:
                    child["from_run"] = f"{producers[0].run_id}/{producers[0].name}"
                if direction == "output":
                    child["consumed_by_runs"] = sorted({t.run_id for t in store.consumers(artifact.id)} - {run_id})
                node["children"].append(child)
        tasks.append(node)
    return {"kind": "run", "role": "run", "run_id": run.run_id, "pipeline": run.pipeline, "status": run.status,
            "started": run.started, "finished": run.finished, "params": run.params, "error": run.error,
            "code": run.code,
            "headline": store.headline(run_id), "children": tasks}


def resolve(store: Store, ref: str) -> tuple[str, Any]:
    """('run', run id) | ('artifact', Artifact) for a run id, an artifact URI or model:<name>/<version>."""
    if not store.exists():
        raise LineageError(f"no lineage store at {store.path}: run the pipeline locally first (`dermpipe run`)")
    match = MODEL_REF.match(ref)
    if match:
        artifact = store.model_version(match["name"], int(match["version"]))
        if artifact is None:
            known = ", ".join(f"model:{n}/{v}" for n, v, _ in store.model_versions()) or "none"
            raise LineageError(f"no deployed version {ref!r} in the lineage store {store.path}; known: {known}")
        return "artifact", artifact
    if store.run(ref) is not None:
        return "run", ref
    for candidate in (ref, str(Path(ref).expanduser().resolve())):
        artifact = store.artifact_by_uri(candidate)
        if artifact is not None:
            return "artifact", artifact
    recent = ", ".join(r.run_id for r in store.runs(limit=3)) or "none"
    raise LineageError(f"{ref!r} is neither a run id, an artifact URI nor model:<name>/<version> known to the lineage "
                       f"store {store.path}. Recent runs: {recent}. Artifact URIs: `dermpipe show RUN_ID`.")


def lineage(store: Store, ref: str) -> dict[str, Any]:
    """The whole answer for one reference: {'ref', 'kind', and 'run' or 'upstream' + 'downstream'}."""
    kind, target = resolve(store, ref)
    if kind == "run":
        return {"ref": ref, "kind": "run", "run": run_graph(store, target)}
    readers = sorted({t.run_id for t in store.consumers(target.id)})
    return {"ref": ref, "kind": "artifact", "artifact_id": target.id, "read_by_runs": readers,
            "upstream": upstream(store, target), "downstream": downstream(store, target)}


# ---------------------------------------------------------------- terminal rendering

def plain(value: Any) -> Any:
    """KFP hands numbers back as floats (protobuf Struct): 160.0 reads better as 160."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def _short(value: Any, width: int = 48) -> str:
    text = str(plain(value))
    return text if len(text) <= width else text[: width - 1] + "…"


def describe_code(code: dict[str, Any]) -> str:
    """'code 0.1.0+abc git 1a2b3c4d5e (uncommitted changes)' from a run's code identity; '' when unknown."""
    parts = [f"code {code['code_version']}"] if code.get("code_version") else []
    if code.get("git_commit"):
        parts.append(f"git {code['git_commit'][:10]}" + (" (uncommitted changes)" if code.get("git_dirty") else ""))
    return " ".join(parts)


def label(node: dict[str, Any]) -> str:
    """One line for a node of a lineage tree."""
    if node["kind"] == "run":
        return _run_label(node)
    if node["kind"] == "task":
        return _task_label(node)
    return _artifact_label(node)


def _run_label(node: dict[str, Any]) -> str:
    head = ", ".join(f"{k} {v:.4f}" for k, v in node["headline"].items())
    params = ", ".join(f"{k}={_short(v, 40)}" for k, v in node["params"].items())
    return f"run {node['run_id']} [{node['status']}] {head} {describe_code(node['code'])}\n    params: {params}"


def _task_label(node: dict[str, Any]) -> str:
    role = node.get("role", "")
    lead = "" if role == "task" else f"{role}: "
    flags = " (cache hit)" if node["cached"] else ""
    params = ", ".join(f"{k}={_short(v, 40)}" for k, v in node["params"].items() if not k.startswith("pipelinech"))
    text = f"{lead}task {node['name']} [{node['status']}{flags}, {node['seconds']:.1f}s] run {node['run_id']}"
    if node.get("code_version"):
        text += f" code {node['code_version']}"
    if node.get("git_commit"):
        text += f" git {node['git_commit'][:10]}"
    if params:
        text += f" params {params}"
    if node.get("repeated"):
        text += " (shown above)"
    if node.get("reused_by_runs"):
        text += f"; reused from the cache by {len(node['reused_by_runs'])} later run(s)"
    return text


def _artifact_label(node: dict[str, Any]) -> str:
    text = f"{node.get('role', '')}: {node['name']} [{node['type']}] {node['uri']}"
    if node["hash"]:
        text += f" sha256 {node['hash'][:12]}"
    if node["summary"]:
        text += " " + " ".join(f"{k}={_short(v)}" for k, v in node["summary"].items())
    if node.get("from_run"):
        text += f" (written by {node['from_run']})"
    if node.get("consumed_by_runs"):
        text += f" (also read by {', '.join(node['consumed_by_runs'])})"
    if node.get("repeated"):
        text += " (shown above)"
    return text


def render(node: dict[str, Any], prefix: str = "", last: bool = True, top: bool = True) -> list[str]:
    """A node and its children as box-drawing tree lines."""
    lines = label(node).split("\n")
    branch = "" if top else ("└── " if last else "├── ")
    below = "" if top else ("    " if last else "│   ")
    out = [prefix + branch + lines[0]] + [prefix + below + extra for extra in lines[1:]]
    children = node.get("children", [])
    for i, child in enumerate(children):
        out += render(child, prefix + below, i == len(children) - 1, top=False)
    return out


def render_lineage(answer: dict[str, Any]) -> str:
    if answer["kind"] == "run":
        return "\n".join(render(answer["run"]))
    up = render(answer["upstream"])
    down_node = answer["downstream"]
    down = render(down_node) if down_node["children"] else [label(down_node), "└── (not read by any task yet)"]
    readers = answer["read_by_runs"]
    runs = f"read by {len(readers)} run(s): {', '.join(readers)}" if readers else "read by no run yet"
    return "\n".join(["upstream: what produced it", *up, "", f"downstream: what used it ({runs})", *down])
