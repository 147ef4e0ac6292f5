"""The retraining trigger learns from feedback: the training run it starts gets feedback_log_root and the label
store's fingerprint (so a cached ingest is reused only while no new label arrived)."""

import json
import types
from pathlib import Path

from dermpipe.data.feedback import feedback_fingerprint
from dermpipe.orchestration.retrain import trigger, with_feedback
from dermpipe.pipelines import local_backend
from dermpipe.serving.labels import Label, append_labels

RESULT = {"run_id": "dermpipe-training-20261204-101500", "name": "dermpipe-training", "state": "succeeded"}


def store(tmp_path, rid="r1") -> str:
    append_labels(str(tmp_path / "logs"), "derm", [Label(rid, "MEL", "biopsy", "2026-12-01")])
    return str(tmp_path / "logs" / "derm")


def test_local_retraining_run_gets_the_feedback_folder_and_fingerprint(monkeypatch, tmp_path):
    folder = store(tmp_path)
    ran = {}

    def fake_subprocess_run(cmd, env, **kwargs):
        ran["params"] = json.loads(Path(cmd[-2]).read_text())["params"]
        Path(cmd[-1]).write_text(json.dumps(RESULT))
        return types.SimpleNamespace(returncode=0)

    monkeypatch.setattr(local_backend.subprocess, "run", fake_subprocess_run)
    started = trigger("local", {"source": "demo", "epochs": 1}, feedback_log_root=folder)
    assert ran["params"] == {"source": "demo", "epochs": 1, "feedback_log_root": folder,
                             "feedback_fingerprint": feedback_fingerprint(folder, 365)}
    assert started["params"]["feedback_log_root"] == folder


def test_fingerprint_follows_new_labels_and_the_callers_own_settings_win(tmp_path):
    folder = store(tmp_path)
    first = with_feedback({}, folder)["feedback_fingerprint"]
    store(tmp_path, "r2")
    assert with_feedback({}, folder)["feedback_fingerprint"] != first
    own = with_feedback({"feedback_log_root": folder, "feedback_retention_days": 0}, "gs://elsewhere")
    assert own["feedback_log_root"] == folder and own["feedback_fingerprint"] == feedback_fingerprint(folder, 0)
    assert with_feedback({"epochs": 1}) == {"epochs": 1}  # no feedback: the arguments unchanged


def test_retrain_component_passes_the_feedback_folder(tmp_path):
    from dermpipe.components.retrain import retrain

    folder = store(tmp_path)
    request = types.SimpleNamespace(path=str(tmp_path / "request.md"), uri="", metadata={})
    retrain.python_func(request=request, backend="none", feedback_log_root=folder)
    text = Path(request.path).read_text()
    assert f'"feedback_log_root": "{folder}"' in text and '"feedback_fingerprint"' in text
