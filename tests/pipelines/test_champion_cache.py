"""The champion enters the DAG as parameters: a changed champion re-runs the gate, an unchanged one keeps the cache,
evaluate (model and data only) is reused either way, and deploy (never cached) is idempotent.

Its own DERMPIPE_HOME and registry, so the shared runs' registry, cache and lineage store are untouched."""

import json
import re
from pathlib import Path

from dermpipe.cli.main import _summary
from dermpipe.config import MODEL_NAME
from dermpipe.deploy import registry
from dermpipe.pipelines.local import run_local

STAGES = ["ingest", "merge", "split", "prepare", "train", "profile", "evaluate", "explain"]


def _other_model_as_champion(root: str, tmp_path: Path) -> int:
    """Push an untrained model of the same shape as a new version and promote it, as another run would."""
    from dermpipe.deploy.deploy import push
    from dermpipe.model.zoo import build_classifier

    model, _ = build_classifier("simple_cnn", 32, 8, seed=7)
    (tmp_path / "other").mkdir()
    model.save(tmp_path / "other" / "model.keras")
    version, _ = push(tmp_path / "other", root, MODEL_NAME, {"run": "another run"})
    assert registry.promote(root, MODEL_NAME, version, expected=registry.current_version(root, MODEL_NAME),
                            reason="another run").promoted
    return version


def test_a_changed_champion_re_runs_the_gate_and_an_unchanged_one_does_not(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("DERMPIPE_HOME", str(tmp_path / "home"))
    root = str(tmp_path / "registry")
    params = {**tiny, "min_balanced_accuracy": 0.0, "registry_root": root}
    first = run_local(params)  # no champion yet: the model becomes version 1
    assert first.status == "succeeded", first.error
    assert first.tasks["resolve-champion"].outputs == {"version": 0, "digest": "", "benchmark_uri": "",
                                                       "benchmark": ""}
    assert first.artifact("deploy", "pushed")["metadata"]["action"] == "pushed"
    assert registry.current_version(root, MODEL_NAME) == 1

    second = run_local(params)  # the champion changed (none -> 1): the gate must compare with it
    assert all(second.tasks[name].cached for name in STAGES)
    assert not second.tasks["gate"].cached and second.tasks["resolve-champion"].outputs["version"] == 1
    decision = Path(second.artifact("gate", "decision")["uri"]).read_text()
    assert "champion (version 1)" in decision and "challenger - champion 0.0000" in decision  # itself: no drop
    assert second.artifact("deploy", "pushed")["metadata"]["action"] == "unchanged"

    third = run_local(params)  # nothing changed: every cacheable task is a hit; deploy runs and pushes nothing
    assert all(third.tasks[name].cached for name in [*STAGES, "gate"])
    assert not third.tasks["resolve-champion"].cached and not third.tasks["deploy"].cached
    assert third.artifact("deploy", "pushed")["metadata"]["action"] == "unchanged"

    champion = _other_model_as_champion(root, tmp_path)  # another run deploys version 2 meanwhile
    fourth = run_local(params)
    assert not fourth.tasks["gate"].cached  # the stale-champion defect: this used to come from the cache
    assert all(fourth.tasks[name].cached for name in STAGES)
    decision = fourth.artifact("gate", "decision")
    assert decision["metadata"]["champion_version"] == champion
    assert f"champion (version {champion})" in Path(decision["uri"]).read_text()
    pushed = fourth.artifact("deploy", "pushed")["metadata"]
    assert pushed["action"] == "reused" and pushed["version"] == 1 and pushed["promoted"] is True
    assert registry.versions(root, MODEL_NAME) == [1, 2]  # the same model is not pushed twice
    current = registry.read_current(root, MODEL_NAME)
    assert (current["version"], current["previous"]) == (1, champion)
    summary = _summary(fourth)
    assert re.search(rf"^serving +{MODEL_NAME} version 1 \({re.escape(root)}/{MODEL_NAME}/1\)$", summary, re.MULTILINE)
    assert json.loads(Path(fourth.artifact("deploy", "pushed")["uri"]).read_text())["current_version"] == 1
