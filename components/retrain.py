"""retrain: the retraining trigger the monitoring pipeline runs when drift is detected.

    local   run the training pipeline here (pipelines/local.py run_local; from inside a kfp.local task, in a child
            process, since a running task has no kfp.dsl decorators)
    kfp     submit the compiled training pipeline to Kubeflow Pipelines with kfp.Client
    vertex  submit it to Vertex AI Pipelines with google.cloud.aiplatform.PipelineJob
    none    submit nothing; write down what would have been submitted
"""

import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from kfp.dsl import Markdown, Output

from dermpipe.componentkit import stage_component

BACKENDS = ("local", "kfp", "vertex", "none")


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


def _run_name() -> str:
    return "dermpipe-retrain-" + dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")


def training_package(template_path: str) -> str:
    """The compiled training pipeline: template_path when given, else compiled now into a temporary file."""
    if template_path:
        return template_path
    from dermpipe.pipelines.compile import compile_training

    out = Path(tempfile.mkdtemp(prefix="dermpipe-retrain-")) / "training.yaml"
    return str(compile_training(out))


def run_local_training(params: dict[str, Any]) -> dict[str, Any]:
    """Run the training pipeline locally and return its run id and status."""
    if os.environ.get("_KFP_RUNTIME", "false") == "true":
        env = {k: v for k, v in os.environ.items() if k != "_KFP_RUNTIME"}
        done = subprocess.run([sys.executable, "-m", "dermpipe.components.retrain", json.dumps(params)], env=env,
                              capture_output=True, text=True, check=False)
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode != 0 or not lines:
            raise RuntimeError(f"local retraining failed (exit {done.returncode}): {done.stderr[-2000:]}")
        return json.loads(lines[-1])
    from dermpipe.pipelines.local import run_local

    record = run_local(params)
    return {"run_id": record.run_id, "status": record.status, "error": record.error}


def submit_kfp(params: dict[str, Any], host: str, template_path: str, client_factory=None) -> dict[str, Any]:
    """create_run_from_pipeline_package on a Kubeflow Pipelines host (kfp.Client)."""
    import kfp

    client = (client_factory or kfp.Client)(host=host or None)
    run = client.create_run_from_pipeline_package(training_package(template_path), arguments=params,
                                                  run_name=_run_name())
    return {"run_id": getattr(run, "run_id", str(run)), "host": host}


def submit_vertex(params: dict[str, Any], project: str, location: str, pipeline_root: str, template_path: str,
                  job_class=None) -> dict[str, Any]:
    """Submit a Vertex AI PipelineJob of the compiled training pipeline (needs google-cloud-aiplatform)."""
    if job_class is None:
        try:
            from google.cloud import aiplatform
        except ImportError as err:
            raise RuntimeError("the vertex backend needs google-cloud-aiplatform: pip install "
                               "google-cloud-aiplatform (a dermpipe dependency) in the monitoring image") from err
        job_class = aiplatform.PipelineJob
    if not pipeline_root:
        raise ValueError("vertex retraining needs pipeline_root (gs://BUCKET/dermpipe/artifacts)")
    job = job_class(display_name=_run_name(), template_path=training_package(template_path),
                    pipeline_root=pipeline_root, parameter_values=params, project=project or None,
                    location=location or None)
    job.submit()
    return {"run_id": getattr(job, "resource_name", ""), "project": project, "location": location}


def trigger(backend: str, params: dict[str, Any], *, host: str = "", template_path: str = "", project: str = "",
            location: str = "", pipeline_root: str = "") -> dict[str, Any]:
    """Start a training run on `backend`; returns what was started (backend, params, run id, ...)."""
    if backend not in BACKENDS:
        raise ValueError(f"retrain backend {backend!r} is not one of {BACKENDS}")
    started: dict[str, Any] = {"backend": backend, "params": params}
    if backend == "local":
        started.update(run_local_training(params))
    elif backend == "kfp":
        started.update(submit_kfp(params, host, template_path))
    elif backend == "vertex":
        started.update(submit_vertex(params, project, location, pipeline_root, template_path))
    else:
        started["run_id"] = ""
        started["status"] = "not submitted (backend none)"
    return started


def render(started: dict[str, Any], reason: str) -> str:
    lines = ["# Retraining triggered", "", f"Reason: {reason}", "", "| what | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in started.items() if k != "params"]
    lines += ["", "Training arguments:", "", "```json", json.dumps(started["params"], indent=1), "```"]
    return "\n".join(lines) + "\n"


def run(request, backend: str, training_params: str, reason: str, **targets: str) -> None:
    from dermpipe.lineage.artifacts import annotate

    started = trigger(backend, parse_params(training_params), **targets)
    Path(request.path).parent.mkdir(parents=True, exist_ok=True)
    Path(request.path).write_text(render(started, reason))
    annotate(request, {k: v for k, v in started.items() if k != "params"})
    print(f"retraining: {started}")


@stage_component()
def retrain(
    request: Output[Markdown], backend: str = "local", training_params: str = "{}", reason: str = "drift detected",
    kfp_host: str = "", template_path: str = "", project: str = "", location: str = "", pipeline_root: str = "",
):
    """Start a training run (local / kfp / vertex / none); runs only when the drift stage detected drift."""
    from dermpipe.components.retrain import run

    run(request, backend, training_params, reason, host=kfp_host, template_path=template_path, project=project,
        location=location, pipeline_root=pipeline_root)


if __name__ == "__main__":  # the child process of a local retraining started from inside a pipeline task
    print(json.dumps(run_local_training(parse_params(sys.argv[1]))))
