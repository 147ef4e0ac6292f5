"""The `local` Backend (dermpipe.pipelines.local_backend): registered for dermpipe.orchestration by entry point,
the same interface as kfp and vertex, a run's result (run id, status, outputs) read from its record, and parameters
refused before anything starts."""

import inspect

import pytest

from dermpipe.orchestration.backend import Backend, BackendSettings
from dermpipe.orchestration.connect import connect, registered
from dermpipe.orchestration.errors import SubmitError
from dermpipe.pipelines.local import RunRecord, TaskRecord
from dermpipe.pipelines.local_backend import LocalBackend, outputs, run_child, run_params, status_of


def record() -> RunRecord:
    run = RunRecord(run_id="dermpipe-training-1", pipeline="dermpipe-training", status="succeeded", started="t0",
                    params={}, pipeline_root="/p", finished="t1")
    run.tasks["evaluate"] = TaskRecord("evaluate", status="success", outputs={"metrics": {"metadata": {
        "balanced_accuracy": 0.61, "accuracy": 0.7}}})
    run.tasks["train"] = TaskRecord("train", status="success", outputs={"model": {"uri": "/p/train/model"}})
    run.tasks["deploy"] = TaskRecord("deploy", status="success", outputs={"pushed": {"uri": "/p/deploy", "metadata": {
        "version": 4.0, "registry_uri": "/r/dermpipe-isic2019/4"}}})
    return run


def test_connect_finds_the_registered_local_backend():
    assert "local" in registered("dermpipe.backends")
    backend = connect("local", BackendSettings())
    assert isinstance(backend, LocalBackend) and backend.kind == "local"
    with pytest.raises(SubmitError, match="no schedules"):
        backend.create_schedule(None, {}, name="x", cron="0 * * * *", experiment="e")
    assert backend.schedules() == []


def test_same_interface_as_kfp_and_vertex():
    interface = {n: inspect.signature(m) for n, m in inspect.getmembers(Backend, inspect.isfunction)
                 if not n.startswith("_")}
    own = {n: inspect.signature(m) for n, m in inspect.getmembers(LocalBackend, inspect.isfunction)
           if not n.startswith("_")}
    assert not inspect.isabstract(LocalBackend) and set(own) == set(interface)
    for name in set(interface) - {"submit"}:  # submit: package may be None (the runner builds the DAG itself)
        assert own[name] == interface[name], name
    assert list(inspect.signature(LocalBackend.submit).parameters) == list(interface["submit"].parameters)


def test_a_run_result_is_read_from_its_record():
    status = status_of(record())
    assert (status.run_id, status.state, status.created, status.finished) == ("dermpipe-training-1", "succeeded",
                                                                            "t0", "t1")
    assert status.tasks == {"evaluate": "success", "train": "success", "deploy": "success"}
    assert status.outputs == {"test": {"balanced_accuracy": 0.61, "accuracy": 0.7}, "model": "/p/train/model",
                              "deployed_version": 4, "registry_uri": "/r/dermpipe-isic2019/4"}
    undeployed = record()
    del undeployed.tasks["deploy"]
    assert "deployed_version" not in outputs(undeployed)


def test_parameters_are_the_pipeline_defaults_under_the_given_ones_checked():
    params = run_params({"epochs": 2, "source": "demo"})
    assert params["epochs"] == 2 and params["source"] == "demo"
    assert "source_fingerprint" not in params and "registry_root" not in params  # the runner computes them
    failed = run_child({"params": {"epochs": 1, "epocs": 2}})
    assert failed.state == "failed" and failed.run_id == ""
    assert failed.error.startswith("nothing was started: retraining parameters: unknown pipeline parameter(s) epocs")


def test_the_child_process_reports_refused_parameters_as_a_result(monkeypatch):
    """A real child (`python -m dermpipe.pipelines.local_backend`): refused before anything starts, and said so in
    its JSON result, which the retraining trigger turns into an error naming the parameter."""
    from dermpipe.orchestration.retrain import trigger

    monkeypatch.setenv("_KFP_RUNTIME", "true")  # as inside the monitoring DAG's retrain task: the child drops it
    with pytest.raises(RuntimeError, match=r"no run was started\): nothing was started: retraining parameters: "
                                           r"unknown pipeline parameter\(s\) epocs"):
        trigger("local", {"epocs": 1})


def test_the_training_compiler_runs_in_a_child_without_the_task_marker(monkeypatch, tmp_path):
    """Inside the monitoring DAG's retrain task kfp.dsl cannot build components (_KFP_RUNTIME=true), so the
    training pipeline is compiled by a child of this module that leaves the marker out; its error is kept."""
    import sys
    import types

    from dermpipe.pipelines import local_backend

    ran = {}

    def fake_run(cmd, env, **kwargs):
        ran["cmd"], ran["env"] = cmd, env
        return types.SimpleNamespace(returncode=1, stdout="", stderr="CompileError: no such image")

    monkeypatch.setenv("_KFP_RUNTIME", "true")
    monkeypatch.setattr(local_backend.subprocess, "run", fake_run)
    with pytest.raises(RuntimeError, match="exit 1: CompileError: no such image"):
        local_backend.compile_training("vertex", tmp_path / "training.yaml")
    assert ran["cmd"] == [sys.executable, "-m", "dermpipe.pipelines.local_backend", "compile", "vertex",
                          str(tmp_path / "training.yaml")]
    assert "_KFP_RUNTIME" not in ran["env"]
