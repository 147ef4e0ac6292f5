"""Compile the training DAG to KFP IR YAML, with dermpipe's own images on every task."""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml
from kfp import compiler

from dermpipe import config
from dermpipe.pipelines.training import Placement, build_training_pipeline

GPU_EXECUTORS = ("exec-train",)


def set_images(documents: list[dict], base_image: str, gpu_image: str) -> list[dict]:
    """Point every executor at dermpipe's image (the trainer at the GPU image)."""
    executors = documents[0]["deploymentSpec"]["executors"]
    for name, executor in executors.items():
        executor["container"]["image"] = gpu_image if name in GPU_EXECUTORS else base_image
    return documents


def compile_training(
    out: Path,
    *,
    base_image: str = config.BASE_IMAGE,
    gpu_image: str = config.GPU_IMAGE,
    placement: Placement = Placement(),
) -> Path:
    """Write the pipeline's IR YAML to `out`; returns out."""
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "pipeline.yaml"
        compiler.Compiler().compile(build_training_pipeline(placement), str(raw))
        documents = [d for d in yaml.safe_load_all(raw.read_text()) if d]
    set_images(documents, base_image, gpu_image)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return out
