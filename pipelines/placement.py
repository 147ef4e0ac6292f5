"""Placement: where the pipelines' tasks run on a cluster (GPU, CPU/memory, tolerations, retries, caching).

One object for both factories (training and monitoring) and the CLI's compile/submit flags, whose defaults are read
from here. Decided at compile time, never in the stage logic; local runs pass None, since kfp.local ignores it.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Placement:
    """Where tasks run on a cluster. Defaults fit one GKE node with an NVIDIA T4/L4 for training."""

    train_accelerator: str = "nvidia.com/gpu"  # on Vertex: e.g. NVIDIA_TESLA_T4, NVIDIA_L4
    train_accelerator_count: int = 1
    train_cpu: str = "8"
    train_memory: str = "32G"
    step_cpu: str = "2"
    step_memory: str = "8G"
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
    def for_backend(cls, backend: str, **overrides) -> "Placement":
        """KFP on GKE (tolerations, node selector) or Vertex AI (accelerator type, no Kubernetes settings)."""
        if backend == "vertex":
            base = {"train_accelerator": "NVIDIA_TESLA_T4", "gpu_toleration": False, "gke_accelerator": "",
                    "spot": False}
            return cls(**{**base, **overrides})
        if backend == "kfp":
            return cls(**overrides)
        raise ValueError(f"unknown backend {backend!r}: expected kfp or vertex")
