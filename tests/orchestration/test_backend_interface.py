"""One Backend interface: KFP and Vertex expose the same public methods with the same signatures, so callers (the
CLI, schedules, the retrain trigger) never branch on the backend; and the CLI's compile defaults are Placement's."""

import inspect

import pytest

from dermpipe.orchestration.backend import Backend, BackendSettings
from dermpipe.orchestration.connect import connect
from dermpipe.orchestration.errors import SubmitError
from dermpipe.orchestration.kfp_backend import KfpBackend
from dermpipe.orchestration.vertex_backend import VertexBackend


def _public(cls) -> dict[str, inspect.Signature]:
    return {name: inspect.signature(member) for name, member in inspect.getmembers(cls, inspect.isfunction)
            if not name.startswith("_")}


def test_both_backends_implement_the_same_interface():
    interface = _public(Backend)
    assert {"submit", "status", "runs", "create_schedule", "schedules", "pause_schedule", "resume_schedule",
            "delete_schedule"} <= set(interface)
    for implementation in (KfpBackend, VertexBackend):
        assert not inspect.isabstract(implementation), implementation
        methods = _public(implementation)
        for name, signature in interface.items():
            assert methods[name] == signature, f"{implementation.__name__}.{name}{methods[name]} != {signature}"
    # what the KFP implementation adds (upload, experiment_id) is its own business, not part of what callers use
    assert set(interface) == {n for n in _public(VertexBackend)}


@pytest.mark.parametrize("kind, settings, message", [
    ("kfp", BackendSettings(), "--host"),
    ("vertex", BackendSettings(region="us-central1"), "--project"),
    ("vertex", BackendSettings(project="p", region="r", pipeline_root="/tmp/x"), "Cloud Storage"),
    ("airflow", BackendSettings(), "unknown backend 'airflow'"),
])
def test_connect_names_what_is_missing(kind, settings, message):
    with pytest.raises(SubmitError, match=message):
        connect(kind, settings)


def test_cli_compile_defaults_are_placements():
    from dermpipe.cli.cloud import compile_
    from dermpipe.pipelines.placement import Placement

    defaults = {name: p.default.default for name, p in inspect.signature(compile_).parameters.items()}
    placement = Placement()
    assert defaults["accelerator_count"] == placement.train_accelerator_count
    assert defaults["train_cpu"] == placement.train_cpu and defaults["train_memory"] == placement.train_memory
    assert defaults["gke_accelerator"] == placement.gke_accelerator and defaults["spot"] == placement.spot
    assert defaults["retries"] == placement.retries
    assert defaults["cache_ingest"] == ("ingest" not in placement.uncached_tasks)
