"""Compile a dermpipe DAG (training or monitoring) to KFP IR YAML, with dermpipe's own images on every task."""

from __future__ import annotations

import importlib
import inspect
import tempfile
from pathlib import Path
from typing import Any

import yaml
from kfp import compiler

from dermpipe import config
from dermpipe.pipelines.placement import Placement
from dermpipe.pipelines.training import build_training_pipeline

GPU_EXECUTORS = ("exec-train", "exec-train-fold")
PIPELINES = ("training", "training-cv", "monitoring")  # training-cv: folds in a ParallelFor, ensemble deployed
MONITORING_MODULE = "dermpipe.pipelines.monitoring"


class CompileError(RuntimeError):
    """The pipeline cannot be compiled; the message says what is missing and what to do."""


def set_images(documents: list[dict], base_image: str, gpu_image: str, git_commit: str = "") -> list[dict]:
    """Point every executor at dermpipe's image (the trainer at the GPU image), and tell each task its image and the
    git commit the pipeline was compiled from (artifact metadata: what KFP/Vertex lineage shows)."""
    from dermpipe.lineage.artifacts import GIT_COMMIT_ENV, IMAGE_ENV

    executors = documents[0]["deploymentSpec"]["executors"]
    for name, executor in executors.items():
        image = gpu_image if name in GPU_EXECUTORS else base_image
        executor["container"]["image"] = image
        env = [e for e in executor["container"].get("env", []) if e["name"] not in (IMAGE_ENV, GIT_COMMIT_ENV)]
        env.append({"name": IMAGE_ENV, "value": image})
        if git_commit:
            env.append({"name": GIT_COMMIT_ENV, "value": git_commit})
        executor["container"]["env"] = env
    return documents


def monitoring_pipeline_func(placement: Placement | None = None) -> Any:
    """The monitoring DAG from dermpipe.pipelines.monitoring, imported only when asked for.

    The module may expose `build_monitoring_pipeline()` (a factory like training's; given `placement=` when it takes
    that argument) or a ready `monitoring_pipeline`.
    """
    try:
        module = importlib.import_module(MONITORING_MODULE)
    except ModuleNotFoundError as err:
        if err.name != MONITORING_MODULE:
            raise
        raise CompileError(
            "the monitoring pipeline is not part of this installation: pipelines/monitoring.py "
            f"({MONITORING_MODULE}) was not found. It comes with the drift-monitoring work; until then compile "
            "`--pipeline training`."
        ) from err
    factory = getattr(module, "build_monitoring_pipeline", None)
    if factory is not None:
        accepts_placement = "placement" in inspect.signature(factory).parameters
        return factory(placement=placement) if accepts_placement else factory()
    func = getattr(module, "monitoring_pipeline", None)
    if func is None:
        raise CompileError(f"{module.__file__}: defines neither build_monitoring_pipeline() nor monitoring_pipeline")
    return func


def pipeline_func(pipeline: str, placement: Placement | None) -> Any:
    if pipeline == "training":
        return build_training_pipeline(placement)
    if pipeline == "training-cv":
        return build_training_pipeline(placement, cross_validation=True)
    if pipeline == "monitoring":
        return monitoring_pipeline_func(placement)
    raise CompileError(f"unknown pipeline {pipeline!r}: expected one of {', '.join(PIPELINES)}")


def compile_pipeline(
    pipeline: str,
    out: Path,
    *,
    base_image: str | None = None,
    gpu_image: str | None = None,
    placement: Placement = Placement(),
) -> Path:
    """Write the IR YAML of `pipeline` (training | training-cv | monitoring) to `out`; returns out."""
    func = pipeline_func(pipeline, placement)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "pipeline.yaml"
        compiler.Compiler().compile(func, str(raw))
        documents = [d for d in yaml.safe_load_all(raw.read_text()) if d]
    from dermpipe.lineage.artifacts import git_identity

    set_images(documents, base_image or config.image("base"), gpu_image or config.image("trainer-gpu"),
               git_identity()["git_commit"])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return out


def compile_training(
    out: Path,
    *,
    base_image: str | None = None,
    gpu_image: str | None = None,
    placement: Placement = Placement(),
) -> Path:
    """Write the training pipeline's IR YAML to `out`; returns out."""
    return compile_pipeline("training", out, base_image=base_image, gpu_image=gpu_image, placement=placement)
