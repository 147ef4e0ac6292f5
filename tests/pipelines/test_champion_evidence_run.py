"""In one registry, demo -> real ISIC sample -> demo no longer flips the production model: each deployed version
freezes its test split, later gates compare on the champion's frozen set too, a run on other data is refused plainly,
a person's override deploys it on the record, and the next demo run does not take production back.

Its own DERMPIPE_HOME and registry, so the shared runs' registry, cache and lineage store are untouched."""

from pathlib import Path

from typer.testing import CliRunner

from dermpipe.cli.main import app
from dermpipe.config import MODEL_NAME
from dermpipe.deploy import registry
from dermpipe.pipelines.local import run_local

NO_OVERLAP = "the challenger's data shares no image/lesion with version {v}'s frozen benchmark set {ref}"


def _gate(record) -> tuple[dict, str]:
    decision = record.artifact("gate", "decision")
    return decision["metadata"], Path(decision["uri"]).read_text()


def test_demo_then_real_sample_then_demo_does_not_flip_production(tiny, tmp_path, monkeypatch, isic_sample):
    monkeypatch.setenv("DERMPIPE_HOME", str(tmp_path / "home"))
    root = str(tmp_path / "registry")
    demo = {**tiny, "registry_root": root}
    first = run_local(demo)
    assert first.status == "succeeded", first.error
    assert registry.current_version(root, MODEL_NAME) == 1
    v1 = registry.read_record(root, MODEL_NAME, 1)
    assert v1["frozen_benchmark"] == "demo-test@v1"

    # a retrain on the same data (another seed) is compared on v1's set, which is its whole test split; any drop
    # allowed so that it deploys: its test split has the same groups, so v2 keeps the set instead of a copy
    retrain = run_local({**demo, "train_seed": 7, "max_bma_drop": 1.0})
    assert retrain.status == "succeeded", retrain.error
    assert retrain.tasks["split"].cached  # the champion's own set is not a split parameter: no retrain cascade
    meta, text = _gate(retrain)
    n = int(meta["n_test"])  # KFP metadata holds numbers as floats
    assert meta["blessed"] and f"on frozen benchmark set demo-test@v1: it is the whole test split ({n} images)" in text
    assert registry.read_record(root, MODEL_NAME, 2)["frozen_benchmark"] == "demo-test@v1"

    real = run_local({**demo, "source": str(isic_sample)})
    assert real.status == "succeeded", real.error
    assert real.tasks["resolve-champion"].outputs["benchmark"] == "demo-test@v1"  # pinned without being named
    meta, text = _gate(real)
    assert not meta["blessed"] and meta["conditions"]["comparable_on_champion_set"] is False
    assert NO_OVERLAP.format(v=2, ref="demo-test@v1") in text and "--override-gate REASON` to deploy anyway" in text
    assert "deploy" not in real.tasks and registry.current_version(root, MODEL_NAME) == 2

    pushed = CliRunner().invoke(app, ["models", "push", real.run_id, "--override-gate", "pilot on the real sample",
                                      "--registry-root", root])
    assert pushed.exit_code == 0, pushed.output
    v3 = registry.read_record(root, MODEL_NAME, 3)
    assert registry.current_version(root, MODEL_NAME) == 3
    assert v3["gate_override"]["reason"] == "pilot on the real sample"
    assert "comparable_on_champion_set" in v3["gate_override"]["failed_rules"]
    assert v3["frozen_benchmark"] == "isic2019-sample-test@v1"

    third = run_local(demo)  # the demo again: v3's evidence is real images, which the demo data does not hold
    assert third.status == "succeeded", third.error
    assert third.tasks["resolve-champion"].outputs["benchmark"] == "isic2019-sample-test@v1"
    meta, text = _gate(third)
    assert not meta["blessed"] and NO_OVERLAP.format(v=3, ref="isic2019-sample-test@v1") in text
    assert "deploy" not in third.tasks and registry.current_version(root, MODEL_NAME) == 3
    print(f"\nv1 demo BMA {v1['evaluation']['balanced_accuracy']:.4f}; retrain (seed 7) BMA "
          f"{retrain.headline()['balanced_accuracy']:.4f} (v2, same set); real sample run BMA "
          f"{real.headline()['balanced_accuracy']:.4f} (refused, then pushed by override as v3); demo again BMA "
          f"{third.headline()['balanced_accuracy']:.4f} (refused: no overlap with v3's set); current version 3")
