"""Placement: where the pipelines' tasks run on a cluster (GPU, CPU/memory, tolerations, retries, caching).

One object for both factories (training and monitoring) and the CLI's compile/submit flags, whose defaults are read
from here. Decided at compile time, never in the stage logic; local runs pass None, since kfp.local ignores it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from dermpipe.lineage.artifacts import CODE_VERSION_ENV, code_version

if TYPE_CHECKING:  # kfp is imported where tasks are placed, not by the CLI that reads the defaults (`--help`)
    from kfp import dsl


@dataclass(frozen=True)
class Placement:
    """Where tasks run on a cluster. Defaults fit one GKE node with an NVIDIA T4/L4 for training."""

    train_accelerator: str = "nvidia.com/gpu"  # on Vertex: e.g. NVIDIA_TESLA_T4, NVIDIA_L4
    train_accelerator_count: int = 1
    train_cpu: str = "8"
    train_memory: str = "32G"
    step_cpu: str = "2"
    step_memory: str = "8G"
    # The monitoring DAG's drift task: Evidently on a day of logged embeddings (or a folder of images) needs more.
    drift_cpu: str = "4"
    drift_memory: str = "16G"
    gpu_toleration: bool = True  # GKE taints GPU nodes with nvidia.com/gpu=present:NoSchedule
    gke_accelerator: str = ""  # GKE node selector cloud.google.com/gke-accelerator, e.g. nvidia-tesla-t4
    spot: bool = False  # tolerate cloud.google.com/gke-spot (a pre-emptible GPU pool)
    # A pre-empted or killed trainer is retried after 2 min, 4 min, ... (at most 1 h); training is deterministic.
    retries: int = 3
    retry_backoff: str = "120s"
    retry_backoff_factor: float = 2.0
    retry_backoff_max: str = "3600s"
    # Tasks never served from the cache: ingest reads a source that can change under the same name (gs://, a
    # mounted folder), so its output must not be reused unless a source_fingerprint parameter says it is unchanged.
    uncached_tasks: tuple[str, ...] = ("ingest",)

    @classmethod
    def for_backend(cls, backend: str, **overrides) -> Placement:
        """KFP on GKE (tolerations, node selector) or Vertex AI (accelerator type, no Kubernetes settings)."""
        if backend == "vertex":
            base = {"train_accelerator": "NVIDIA_TESLA_T4", "gpu_toleration": False, "gke_accelerator": "",
                    "spot": False}
            return cls(**{**base, **overrides})
        if backend == "kfp":
            return cls(**overrides)
        raise ValueError(f"unknown backend {backend!r}: expected kfp or vertex")


def _cache(task: dsl.PipelineTask, placement: Placement | None) -> None:
    if placement is not None and task.name in placement.uncached_tasks:
        task.set_caching_options(False)


def place_step(task: dsl.PipelineTask, placement: Placement | None, *, cpu: str | None = None,
               memory: str | None = None) -> dsl.PipelineTask:
    """A CPU task: the code version (a cache key part), caching, and CPU/memory limits (the step defaults unless
    `cpu`/`memory` name the task's own)."""
    task.set_env_variable(CODE_VERSION_ENV, code_version())
    _cache(task, placement)
    if placement is not None:
        task.set_cpu_limit(cpu or placement.step_cpu).set_memory_limit(memory or placement.step_memory)
    return task


def place_train(task: dsl.PipelineTask, placement: Placement | None) -> dsl.PipelineTask:
    """The GPU trainer: accelerator, GKE toleration/node selector/Spot, and retries with back-off when pre-empted."""
    from kfp import kubernetes

    task.set_env_variable(CODE_VERSION_ENV, code_version())
    _cache(task, placement)
    if placement is None:
        return task
    task.set_cpu_limit(placement.train_cpu).set_memory_limit(placement.train_memory)
    if placement.train_accelerator_count > 0:
        task.set_accelerator_type(placement.train_accelerator).set_accelerator_limit(placement.train_accelerator_count)
        if placement.gpu_toleration:
            kubernetes.add_toleration(task, key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")
        if placement.gke_accelerator:
            kubernetes.add_node_selector(task, label_key="cloud.google.com/gke-accelerator",
                                         label_value=placement.gke_accelerator)
    if placement.spot:
        kubernetes.add_toleration(task, key="cloud.google.com/gke-spot", operator="Equal", value="true",
                                  effect="NoSchedule")
    if placement.retries > 0:
        task.set_retry(num_retries=placement.retries, backoff_duration=placement.retry_backoff,
                       backoff_factor=placement.retry_backoff_factor, backoff_max_duration=placement.retry_backoff_max)
    return task
