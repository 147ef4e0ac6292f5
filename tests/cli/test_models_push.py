"""`dermpipe models push RUN --override-gate REASON`: a recorded human decision deploys a run the gate refused; the
reason is required, who/when/why and the failed rules land in dermpipe.json and the lineage, and the served answers
say gate_override: true."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from dermpipe import config
from dermpipe.cli.main import app
from dermpipe.deploy import registry

MODEL = config.MODEL_NAME
FAILED = ["above_chance", "test BMA 0.5900 (95 % one-sided lower bound 0.4700, ...): lower bound is not above "
          "chance level 0.5000 (1/2 classes): failed"]


def _artifact(kind: str, uri: Path, metadata: dict) -> dict:
    return {"type": kind, "uri": str(uri), "metadata": metadata}


def _run(home: Path, run_id: str, model: Path, blessed: bool, isic_sample: Path, registry_root: str = "") -> str:
    """The record of a finished local run (as pipelines/local.py writes it) over a real model folder and a test split
    of real ISIC 2019 sample images; its gate refused the model unless `blessed`."""
    from dermpipe.pipelines.local import RunRecord, TaskRecord, save_record

    folder = home / "artifacts" / run_id
    folder.mkdir(parents=True)
    images = pd.read_csv(isic_sample / "ISIC_2019_Training_GroundTruth.csv").head(12)
    test = pd.DataFrame({"image": images["image"], "label": ["MEL" if m else "NV" for m in images["MEL"]],
                         "group_key": "image:" + images["image"]})
    test.to_parquet(folder / "test.parquet")
    gate = {"blessed": blessed, "conditions": {"min_balanced_accuracy": True, "above_chance": blessed},
            "reasons": ["compared on the whole test split (12 images; no frozen benchmark set pinned)",
                        *([] if blessed else FAILED[1:])]}
    outputs = {"train": {"model": _artifact("system.Model", model, {"backbone": "simple_cnn"})},
               "evaluate": {"metrics": _artifact("system.Metrics", folder / "metrics", {"balanced_accuracy": 0.59})},
               "gate": {"decision": _artifact("system.Markdown", folder / "decision", gate)},
               "split": {"test": _artifact("system.Dataset", folder / "test.parquet", {"params": {"seed": 42}})},
               "ingest": {"dataset": _artifact("system.Dataset", folder / "raw",
                                               {"source": str(isic_sample), "manifest_sha256": "ab" * 32})}}
    tasks = {name: TaskRecord(name, status="success", outputs=out) for name, out in outputs.items()}
    save_record(RunRecord(run_id, "dermpipe-training", "succeeded", "2026-12-07T10:00:00+00:00",
                          {"registry_root": registry_root}, str(home), tasks=tasks))
    return run_id


@pytest.fixture
def setup(tmp_path, monkeypatch, isic_sample):
    from dermpipe.model.zoo import build_classifier

    home = tmp_path / "home"
    monkeypatch.setenv("DERMPIPE_HOME", str(home))
    monkeypatch.setenv("USER", "dr-rossi")
    model = tmp_path / "model"
    model.mkdir()
    build_classifier("simple_cnn", 32, len(config.CLASSES), seed=3)[0].save(model / "model.keras")
    refused = _run(home, "dermpipe-training-refused", model, False, isic_sample, str(tmp_path / "registry"))
    return home, str(tmp_path / "registry"), model, refused


def test_push_needs_a_reason_and_refuses_a_blessed_run(setup, isic_sample, tmp_path):
    home, root, model, refused = setup
    runner = CliRunner()
    for args in ([], ["--override-gate", "  "]):
        result = runner.invoke(app, ["models", "push", refused, "--registry-root", root, *args])
        assert result.exit_code == 2 and "--override-gate" in result.output, result.output
    blessed = _run(home, "dermpipe-training-blessed", model, True, isic_sample)
    result = runner.invoke(app, ["models", "push", blessed, "--override-gate", "pilot", "--registry-root", root])
    assert result.exit_code == 2
    assert "the gate blessed run dermpipe-training-blessed" in result.output
    assert "use the deploy the run already did" in result.output
    assert registry.versions(root, MODEL) == []  # nothing pushed by a refused override


def test_override_is_recorded_and_every_answer_says_so(setup, isic_sample):
    from fastapi.testclient import TestClient

    from dermpipe.lineage.store import Store
    from dermpipe.serving.app import create_app
    from dermpipe.serving.settings import Settings

    home, root, model, refused = setup
    reason = "pilot at clinic A on 48 images; reviewed by Dr Rossi"
    # no --registry-root: the registry the run deployed to (its registry_root parameter)
    result = CliRunner().invoke(app, ["models", "push", refused, "--override-gate", reason])
    assert result.exit_code == 0, result.output
    assert "version 1 pushed and promoted" in result.output and "gate override by dr-rossi" in result.output
    record = registry.read_record(root, MODEL, 1)
    override = record["gate_override"]
    assert override["reason"] == reason and override["user"] == "dr-rossi" and override["at"].startswith("20")
    assert override["run_id"] == refused and override["failed_rules"] == FAILED
    # its test split is frozen as the version's benchmark set, named after the source, like any first deployment
    assert record["frozen_benchmark"] == "isic2019-sample-test@v1"
    assert json.loads(Path(record["frozen_benchmark_uri"]).read_text())["rows"] == 12
    assert registry.current_version(root, MODEL) == 1

    store = Store(home / "lineage.sqlite")
    pushed = store.model_version(MODEL, 1)
    assert pushed is not None and pushed.metadata["gate_override"]["reason"] == reason
    (task,) = store.producers(pushed.id)
    assert task.name == "override-deploy" and task.run_id.startswith("gate-override-")
    assert [a.uri for _, a in store.io(task.id, "input")] == [str(model)]
    from dermpipe.lineage.ui.app import create_app as create_ui

    ui = TestClient(create_ui(store))
    assert task.run_id in ui.get("/").text
    assert ui.get(f"/runs/{task.run_id}").status_code == 200
    lineage = ui.get("/lineage", params={"ref": f"model:{MODEL}/1"})
    assert lineage.status_code == 200 and "override-deploy" in lineage.text

    jpeg = sorted((isic_sample / config.IMAGE_SUBDIR).glob("*.jpg"))[0].read_bytes()
    with TestClient(create_app(Settings(registry_root=root, model_name=MODEL, log_root=None))) as client:
        v1 = client.post(f"/v1/models/{MODEL}:predict",
                         json={"instances": [{"b64": base64.b64encode(jpeg).decode()}]})
        assert v1.status_code == 200, v1.text
        assert v1.json()["gate_override"] is True
        upload = client.post("/predict", files={"image": ("x.jpg", jpeg, "image/jpeg")})
        assert upload.status_code == 200 and upload.json()["gate_override"] is True
    answer = CliRunner().invoke(app, ["predict", str(isic_sample / config.IMAGE_SUBDIR), "--registry-root", root,
                                      "--format", "json"])
    assert answer.exit_code == 0 and json.loads(answer.output)["gate_override"] is True


def test_a_model_folder_of_a_run_is_found_by_its_run(setup, tmp_path):
    home, root, model, refused = setup
    result = CliRunner().invoke(app, ["models", "push", str(model), "--override-gate", "pilot",
                                      "--registry-root", root])
    assert result.exit_code == 0, result.output
    assert registry.read_record(root, MODEL, 1)["gate_override"]["run_id"] == refused
    from dermpipe.model.zoo import build_classifier

    lone = tmp_path / "lone"  # a folder no local run produced: no gate decision to quote, and it says so
    lone.mkdir()
    build_classifier("simple_cnn", 32, len(config.CLASSES), seed=4)[0].save(lone / "model.keras")
    result = CliRunner().invoke(app, ["models", "push", str(lone), "--override-gate", "pilot",
                                      "--registry-root", root])
    assert result.exit_code == 0, result.output
    record = registry.read_record(root, MODEL, 2)
    assert record["gate_override"]["failed_rules"][0].startswith("unknown: no gate decision was found")
    assert "frozen_benchmark" not in record and registry.current_version(root, MODEL) == 2
