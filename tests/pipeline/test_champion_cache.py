"""The champion enters the DAG as parameters: a changed champion re-runs evaluate, an unchanged one keeps the cache,
and deploy (never cached) is idempotent. Each test uses its own registry, so the shared runs' registry is untouched;
training and the other stages come from the shared runs' cache."""

import json
import re
from pathlib import Path

from dermpipe import registry
from dermpipe.cli import _summary
from dermpipe.config import MODEL_NAME
from dermpipe.pipelines.local import run_local

UPSTREAM = ["ingest", "merge", "split", "prepare", "train", "profile"]


def _other_model_as_champion(root: str, tmp_path: Path) -> int:
    """Push an untrained model of the same shape as a new version and promote it, as another run would."""
    from dermpipe.components.deploy import push
    from dermpipe.models import build_classifier

    model, _ = build_classifier("simple_cnn", 32, 8, seed=7)
    (tmp_path / "other").mkdir()
    model.save(tmp_path / "other" / "model.keras")
    version, _ = push(tmp_path / "other", root, MODEL_NAME, {"run": "another run"})
    assert registry.promote(root, MODEL_NAME, version, expected=registry.current_version(root, MODEL_NAME),
                            reason="another run").promoted
    return version


def test_a_changed_champion_re_runs_evaluate_and_an_unchanged_one_does_not(first_run, tiny, tmp_path):
    root = str(tmp_path / "registry")
    params = {**tiny, "min_balanced_accuracy": 0.0, "registry_root": root}
    first = run_local(params)  # the registry is new: no champion; the model becomes version 1
    assert first.status == "succeeded", first.error
    assert all(first.tasks[name].cached for name in UPSTREAM)
    assert first.tasks["resolve-champion"].outputs == {"version": 0, "digest": ""}
    assert first.artifact("deploy", "pushed")["metadata"]["action"] == "pushed"
    assert registry.current_version(root, MODEL_NAME) == 1

    second = run_local(params)  # the champion changed (none -> 1): evaluate must compare with it
    assert not second.tasks["evaluate"].cached
    assert second.tasks["resolve-champion"].outputs["version"] == 1
    assert "champion (version 1)" in Path(second.artifact("evaluate", "decision")["uri"]).read_text()
    assert second.artifact("deploy", "pushed")["metadata"]["action"] == "unchanged"

    third = run_local(params)  # nothing changed: cache hits, deploy runs and pushes nothing
    assert third.tasks["evaluate"].cached and not third.tasks["deploy"].cached
    assert third.artifact("deploy", "pushed")["metadata"]["action"] == "unchanged"

    champion = _other_model_as_champion(root, tmp_path)  # another run deploys version 2 meanwhile
    fourth = run_local(params)
    assert not fourth.tasks["evaluate"].cached  # the stale-champion defect: this used to come from the cache
    decision = fourth.artifact("evaluate", "decision")
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
