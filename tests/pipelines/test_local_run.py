"""The whole training DAG through kfp.local (SubprocessRunner, this environment), on demo and on real images."""

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from dermpipe.cli.main import app
from dermpipe.config import CLASSES
from dermpipe.lineage.store import Store
from dermpipe.pipelines.local import list_records, load_record, run_local

STAGES = ["ingest", "merge", "split", "prepare", "train", "profile", "evaluate", "explain"]


def test_demo_run_executes_every_stage_and_deploys(first_run, home):
    record = first_run
    assert record.status == "succeeded", record.error
    assert sorted(record.tasks) == sorted([*STAGES, "resolve-champion", "gate", "deploy"])
    order = [name for name in record.tasks if name != "resolve-champion"]  # depends on nothing: runs at any point
    assert order[:3] == STAGES[:3]  # prepare and train both follow split; explain and deploy follow evaluate
    assert order.index("evaluate") > order.index("train") and order.index("prepare") > order.index("split")
    assert order.index("profile") > order.index("train")
    assert all(t.status == "success" and not t.cached for t in record.tasks.values())
    headline = record.headline()
    assert set(headline) == {"balanced_accuracy", "accuracy", "macro_f1"}
    assert all(0.0 <= v <= 1.0 for v in headline.values())
    registry_uri = record.artifact("deploy", "pushed")["metadata"]["registry_uri"]
    assert registry_uri == str(home / "registry" / "dermpipe-isic2019" / "1")
    assert (Path(registry_uri) / "saved_model.pb").exists()
    assert json.loads((home / "registry/dermpipe-isic2019/current.json").read_text())["version"] == 1


def test_stage_outputs_are_real(first_run):
    record = first_run
    ingest = record.artifact("ingest", "dataset")
    assert ingest["metadata"]["n_images"] == 240 and len(ingest["metadata"]["manifest_sha256"]) == 64
    merged = pd.read_parquet(record.artifact("merge", "merged")["uri"])
    assert len(merged) == 240
    sizes = [len(pd.read_parquet(record.artifact("split", n)["uri"])) for n in ("train", "val", "test")]
    assert sum(sizes) == 240 and min(sizes) > 0
    shards = record.artifact("prepare", "shards")
    assert shards["metadata"]["counts"] == dict(zip(("train", "val", "test"), sizes, strict=True))
    assert shards["metadata"]["image_size"] == 32 and (Path(shards["uri"]) / "shards.json").exists()
    assert "## Class counts" in Path(record.artifact("split", "report")["uri"]).read_text()
    model = record.artifact("train", "model")
    assert (Path(model["uri"]) / "model.keras").exists()
    assert 1 <= model["metadata"]["epochs_run"] <= 10  # early stopping may end sooner
    predictions = pd.read_parquet(record.artifact("evaluate", "predictions")["uri"])
    assert len(predictions) == sizes[2]
    profile = Path(record.artifact("profile", "profile")["uri"])
    reference = pd.read_parquet(profile / "reference_profile.parquet")
    assert reference["split"].value_counts().to_dict() == dict(zip(("train", "val", "test"), sizes, strict=True))
    assert reference.loc[reference["split"] == "test", "predicted_class"].notna().all()
    assert reference.loc[reference["split"] == "train", "predicted_class"].isna().all()
    assert (profile / "embedding_pca.npz").exists() and "emb_4" in reference.columns
    metrics = record.artifact("evaluate", "metrics")["metadata"]
    assert metrics["accuracy"] == pytest.approx((predictions["label"] == predictions["predicted"]).mean())
    confusion = record.artifact("evaluate", "confusion")["metadata"]["confusionMatrix"]
    assert [spec["displayName"] for spec in confusion["annotationSpecs"]] == list(CLASSES)
    matrix = [row["row"] for row in confusion["rows"]]
    assert sum(map(sum, matrix)) == sizes[2]
    assert sum(matrix[i][i] for i in range(8)) == (predictions["label"] == predictions["predicted"]).sum()
    report = Path(record.artifact("evaluate", "report")["uri"]).read_text()
    assert "Confusion matrix" in report and report.count("data:image/png;base64") == 5  # confusion, ROC, reliability,
        # and the clinical section's decision curve and melanoma ROC with the operating points
    assert "with TTA (flips)" in report and "Melanoma operating points" in report and "age band" in report
    decision = Path(record.artifact("gate", "decision")["uri"]).read_text()
    assert "first deployment" in decision and "lower bound is above chance level" in decision
    assert "| challenger |" in decision and "| baseline_difference |" in decision
    gallery = Path(record.artifact("explain", "gallery")["uri"]).read_text()
    assert gallery.count("<figure>") == record.artifact("explain", "gallery")["metadata"]["examples"] > 0
    assert "Grad-CAM" in gallery


def test_second_identical_run_is_served_from_the_cache(first_run, cached_run, home):
    second = cached_run
    assert second.status == "succeeded"
    assert all(second.tasks[name].cached for name in STAGES)  # evaluate depends on the model and data only
    # resolve-champion and deploy read and change the registry: never from the cache, and deploy is idempotent;
    # the gate re-runs because the champion changed (none -> version 1, this very model)
    assert not any(second.tasks[name].cached for name in ("resolve-champion", "gate", "deploy"))
    assert second.tasks["resolve-champion"].outputs["version"] == 1
    pushed = second.artifact("deploy", "pushed")["metadata"]
    assert pushed["action"] == "unchanged" and "nothing pushed" in pushed["message"]
    assert second.artifact("train", "model")["uri"] == first_run.artifact("train", "model")["uri"]
    names = sorted(p.name for p in (home / "registry/dermpipe-isic2019").iterdir() if not p.name.startswith("."))
    assert names == ["1", "allocated", "benchmarks", "current.json"]  # benchmarks: version 1's frozen test split


def test_unblessed_model_is_not_deployed(first_run, tiny):
    record = run_local({**tiny, "min_balanced_accuracy": 1.01})
    assert record.status == "succeeded"
    assert "deploy" not in record.tasks
    assert record.tasks["evaluate"].cached and not record.tasks["gate"].cached
    decision = record.artifact("gate", "decision")
    assert decision["metadata"]["blessed"] is False and decision["metadata"]["champion_version"] == 1
    text = Path(decision["uri"]).read_text()
    assert "**Not blessed**" in text and "< minimum 1.0100" in text and "champion (version 1)" in text


def test_failed_run_is_recorded_with_the_failing_task(home, tmp_path, tiny):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "ISIC_2019_Training_GroundTruth.csv").write_text("image,MEL\nx,1.0\n")
    (bad / "ISIC_2019_Training_Metadata.csv").write_text("image,age_approx,anatom_site_general,lesion_id,sex\n")
    (bad / "x.jpg").write_bytes(b"\xff\xd8 not really")
    record = run_local({**tiny, "source": str(bad)})
    assert record.status == "failed"
    # the cause, naming the file and the columns, not just "task failed"
    assert record.error.startswith("task merge: SchemaError: ")
    assert "ISIC_2019_Training_GroundTruth.csv: missing column(s) ['NV', 'BCC'" in record.error
    assert load_record(record.run_id).status == "failed"
    stored = Store(home / "lineage.sqlite")
    assert (stored.run(record.run_id).status, stored.run(record.run_id).error) == ("failed", record.error)
    merge = {t.name: t for t in stored.tasks(record.run_id)}["merge"]
    assert merge.status == "failure" and merge.error.startswith("SchemaError: ")


def test_cli_runs_and_show(first_run):
    runner = CliRunner()
    listing = runner.invoke(app, ["runs"])
    assert listing.exit_code == 0 and first_run.run_id in listing.output
    assert f"{first_run.headline()['balanced_accuracy']:.4f}" in listing.output
    shown = runner.invoke(app, ["show", first_run.run_id])
    assert shown.exit_code == 0
    assert "train: success" in shown.output and "balanced_accuracy" in shown.output
    missing = runner.invoke(app, ["show", "no-such-run"])
    assert missing.exit_code == 2 and "no local run 'no-such-run'" in missing.output
    assert [r.run_id for r in list_records()][-1] == first_run.run_id


def test_real_isic_sample_through_the_cli(home, isic_sample):
    """`dermpipe run --source ../shared/data/isic2019-sample` on 475 real images (NV/MEL, _downsampled names)."""
    result = CliRunner().invoke(app, ["run", "--source", str(isic_sample), "--epochs", "2", "--image-size", "32"])
    assert result.exit_code == 0, result.output
    record = list_records()[0]
    assert record.status == "succeeded"
    assert record.artifact("ingest", "dataset")["metadata"]["n_images"] == 475
    merged = record.artifact("merge", "merged")["metadata"]
    assert merged["rows"] == 475 and merged["class_counts"] == {"NV": 361, "MEL": 114}
    assert re.search(rf"^run +{record.run_id}$", result.output, re.MULTILINE)
    assert "test balanced_accuracy" in result.output
    for name in ("evaluation", "gradcam", "data-report"):
        assert Path(record.reports[name]).is_file() and record.reports[name] in result.output
    assert "MEL" in Path(record.reports["data-report"]).read_text()
    assert "licence unknown for 475 of 475 images" in Path(record.reports["data-report"]).read_text()  # no columns
