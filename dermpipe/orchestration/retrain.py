"""The retraining trigger the monitoring pipeline (and `dermpipe monitor --retrain`) runs when drift is detected.

    local   run the training pipeline on this machine: the local runner, through the `local` Backend (registered
            by dermpipe.pipelines, above this layer), which returns the run's result (run id, status, outputs)
    kfp     submit the compiled training pipeline to Kubeflow Pipelines  } through the same Backend interface
    vertex  submit it to Vertex AI Pipelines                             } as `dermpipe submit`
    none    submit nothing; write down what would have been submitted

This is library code below dermpipe.pipelines, so it never imports the DAG factories, nor runs the CLI: the compiled
training package is `template_path`, or the `training` compiler dermpipe.pipelines registers (connect.plugin).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from dermpipe.orchestration.backend import BackendSettings
from dermpipe.orchestration.connect import COMPILER_GROUP, connect, plugin
from dermpipe.orchestration.submit import run_name, submit_run

KINDS = ("local", "kfp", "vertex", "none")
RUN_NAME = "dermpipe-retrain"


def parse_params(training_params: str) -> dict[str, Any]:
    """Training pipeline arguments from a JSON object string ('' or '{}' for the pipeline's defaults)."""
    if not training_params.strip():
        return {}
    try:
        params = json.loads(training_params)
    except json.JSONDecodeError as err:
        raise ValueError(f"training_params is not JSON ({err}); pass an object such as "
                         '{"source": "gs://bucket/isic-2019", "epochs": 10}') from err
    if not isinstance(params, dict):
        raise ValueError(f"training_params must be a JSON object of pipeline arguments, got {type(params).__name__}")
    return params


def training_package(kind: str, template_path: str, workdir: Path) -> Path:
    """The compiled training pipeline: template_path when given, else compiled for `kind` into workdir."""
    if template_path:
        return Path(template_path)
    try:
        return plugin(COMPILER_GROUP, "training")(kind, workdir / "training.yaml")
    except (RuntimeError, ValueError) as err:  # CompileError is a RuntimeError
        raise RuntimeError(f"compiling the training pipeline for {kind} failed: {err}; pass template_path (a "
                           "compiled training.yaml, `dermpipe compile --pipeline training`) to skip compiling here"
                           ) from err


def run_local_training(params: dict[str, Any], settings: BackendSettings | None = None) -> dict[str, Any]:
    """Run the training pipeline on this machine through the `local` Backend; returns its run id, status and
    outputs (the deployed version...). A run that did not succeed is an error naming the run and its cause."""
    status = connect("local", settings or BackendSettings()).submit(None, params, name=run_name(RUN_NAME),
                                                                   experiment="dermpipe")
    if status.state != "succeeded":
        what = f"run {status.run_id} ended {status.state}" if status.run_id else "no run was started"
        raise RuntimeError(f"local retraining failed ({what}): {status.error}; the run's task logs say which stage "
                           "failed (`dermpipe show RUN`)")
    return {"run_id": status.run_id, "status": status.state, "error": status.error, "outputs": status.outputs}


def submit_training(kind: str, params: dict[str, Any], settings: BackendSettings, template_path: str = "",
                    experiment: str = "dermpipe") -> dict[str, Any]:
    """Submit the training pipeline to kfp or vertex exactly as `dermpipe submit` does (checked parameters, a
    fingerprinted gs:// source); returns the run id, name, state and console URL."""
    backend = connect(kind, settings)  # first: a missing --host/--project fails before anything is compiled
    with tempfile.TemporaryDirectory(prefix="dermpipe-retrain-") as tmp:
        package = training_package(kind, template_path, Path(tmp))
        status = submit_run(backend, package, params, workdir=Path(tmp), name=run_name(RUN_NAME),
                            experiment=experiment)
    return {"run_id": status.run_id, "name": status.name, "status": status.state, "url": status.url}


def with_feedback(params: dict[str, Any], feedback_log_root: str = "") -> dict[str, Any]:
    """Training arguments that learn from feedback: feedback_log_root (the caller's own, else this one) and the label
    store's fingerprint now, so a cached ingest is reused only while no new label arrived."""
    from dermpipe.data.feedback import feedback_fingerprint
    from dermpipe.data.ingest import IngestParams

    root = str(params.get("feedback_log_root") or feedback_log_root)
    if not root:
        return params
    days = int(params.get("feedback_retention_days", IngestParams().feedback_retention_days))
    return {**params, "feedback_log_root": root, "feedback_fingerprint": feedback_fingerprint(root, days)}


def trigger(kind: str, params: dict[str, Any], settings: BackendSettings | None = None, *,
            template_path: str = "", feedback_log_root: str = "") -> dict[str, Any]:
    """Start a training run on `kind` (local | kfp | vertex | none); returns what was started (backend, params,
    run id, status...). With feedback_log_root (or one in params) the run adds the labelled, logged images."""
    if kind not in KINDS:
        raise ValueError(f"retrain backend {kind!r} is not one of {KINDS}")
    params = with_feedback(params, feedback_log_root)
    started: dict[str, Any] = {"backend": kind, "params": params}
    if kind == "local":
        started.update(run_local_training(params, settings))
    elif kind == "none":
        started.update(run_id="", status="not submitted (backend none)")
    else:
        started.update(submit_training(kind, params, settings or BackendSettings(), template_path))
    return started


def render(started: dict[str, Any], reason: str) -> str:
    """The retrain task's Markdown request: why, what was started, with which arguments."""
    lines = ["# Retraining triggered", "", f"Reason: {reason}", "", "| what | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in started.items() if k != "params"]
    lines += ["", "Training arguments:", "", "```json", json.dumps(started["params"], indent=1), "```"]
    return "\n".join(lines) + "\n"


def run(request: Any, backend: str, training_params: str, reason: str, *, kfp_host: str = "",
        template_path: str = "", project: str = "", location: str = "", pipeline_root: str = "",
        feedback_log_root: str = "") -> dict[str, Any]:
    """The retrain component's body: trigger, write the request (Markdown) and annotate it for lineage.

    An empty kfp_host means the cluster the task runs in (kfp.Client finds its API there)."""
    from dermpipe.lineage.artifacts import annotate

    settings = BackendSettings(host=kfp_host, project=project, region=location, pipeline_root=pipeline_root,
                               in_cluster=not kfp_host)
    started = trigger(backend, parse_params(training_params), settings, template_path=template_path,
                      feedback_log_root=feedback_log_root)
    Path(request.path).parent.mkdir(parents=True, exist_ok=True)
    Path(request.path).write_text(render(started, reason))
    annotate(request, {k: v for k, v in started.items() if k != "params"})
    print(f"retraining: {started}")
    return started
