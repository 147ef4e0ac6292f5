"""Which backend runs a pipeline: `connect` builds kfp or vertex here and finds backends of the layers above (the
local one, dermpipe.pipelines.local_backend) through package entry points, so that orchestration never imports
upward and no backend module imports this one (backend.py holds only the interface)."""

from __future__ import annotations

from typing import Any

from dermpipe.orchestration.backend import Backend, BackendSettings
from dermpipe.orchestration.errors import SubmitError

BACKEND_GROUP = "dermpipe.backends"  # entry points: backends above this layer (local)
COMPILER_GROUP = "dermpipe.compilers"  # entry points: `training(kind, out) -> Path` compiles the training pipeline
BACKEND_HELP = "kfp (Kubeflow Pipelines, kfp.Client) | vertex (Vertex AI Pipelines)"


def connect(kind: str, settings: BackendSettings) -> Backend:
    """The backend `kind` at `settings`; SubmitError naming the missing flag (--host, --project...) otherwise."""
    if kind == "kfp":
        from dermpipe.orchestration.kfp_backend import KfpBackend

        if not settings.host and not settings.in_cluster:
            raise SubmitError("--backend kfp needs --host (or $KF_PIPELINES_ENDPOINT), e.g. http://localhost:8080")
        return KfpBackend(settings)
    if kind == "vertex":
        from dermpipe.orchestration.vertex_backend import VertexBackend

        return VertexBackend(settings)
    if kind == "local" or kind in registered(BACKEND_GROUP):
        return plugin(BACKEND_GROUP, kind)(settings)
    raise SubmitError(f"unknown backend {kind!r}: expected {BACKEND_HELP} | local (this machine, kfp.local)")


def registered(group: str) -> list[str]:
    """The entry point names of `group` in the installed package metadata (another package may add a backend)."""
    from importlib.metadata import entry_points

    return sorted(ep.name for ep in entry_points(group=group))


def plugin(group: str, name: str) -> Any:
    """The object entry point `name` of `group` names; SubmitError saying to reinstall when the metadata lacks it."""
    from importlib.metadata import entry_points

    found = entry_points(group=group, name=name)
    if not found:
        raise SubmitError(f"no entry point {name!r} in group {group!r}: the dermpipe metadata Python finds is older "
                          "than pyproject.toml (an installation, or a dermpipe.egg-info folder in the current "
                          "directory); reinstall (`make install`, or `pip install -e .` in the checkout)")
    return next(iter(found)).load()
