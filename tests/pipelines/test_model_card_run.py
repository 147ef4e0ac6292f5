"""The model card of the session's real deployed demo version, `dermpipe models show`, the UI's card route, the run
summary's model-card line, and `dermpipe predict --model` deciding with a run's model folder or id."""

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from dermpipe import config
from dermpipe.cli.main import _summary, app
from dermpipe.lineage.store import Store
from dermpipe.lineage.ui.app import create_app
from dermpipe.model.profile.clinical import DECISIONS

pytestmark = pytest.mark.slow  # shares the session's kfp.local demo run with test_local_run.py

MODEL = config.MODEL_NAME


@pytest.fixture(scope="module")
def version(first_run, home) -> Path:
    assert first_run.status == "succeeded", first_run.error
    return Path(first_run.artifact("deploy", "pushed")["metadata"]["registry_uri"])


@pytest.fixture(scope="module")
def card(version) -> dict:
    return json.loads((version / config.MODEL_CARD_JSON).read_text())


def test_the_deployed_version_has_a_card_built_from_the_runs_data(card, version, first_run):
    assert (version / config.MODEL_CARD_HTML).read_text().startswith("<!doctype html>")
    details, data = card["model_details"], card["training_data"]
    assert (details["version"], details["architecture"], details["image_size"]) == (1, "simple_cnn", 32)
    assert details["digest"] == json.loads((version / "dermpipe.json").read_text())["model_digest"]
    for split in ("train", "val", "test"):  # the split stage's own counts, read back from the tables
        expected = first_run.artifact("split", split)["metadata"]["class_counts"]
        assert data["counts_per_class"][split] == {cls: expected[cls] for cls in config.CLASSES}
    assert data["rows"]["test"] == sum(data["counts_per_class"]["test"].values())
    assert data["collections"][0]["collection"].startswith("dermpipe demo data (synthetic")
    assert card["missing"] == []


def _rows(sliced: dict) -> dict:
    return {title: [(r["slice"], int(r["n"]), round(r["accuracy"], 6), round(r["balanced_accuracy"], 6))
                    for r in rows] for title, rows in sliced.items()}


def test_the_cards_figures_are_the_evaluation_and_clinical_calibration(card, version, first_run):
    metrics = first_run.artifact("evaluate", "metrics")["metadata"]
    evaluation = card["evaluation"]
    assert evaluation["balanced_accuracy"] == metrics["balanced_accuracy"]
    assert evaluation["balanced_accuracy_interval"]["lower"] == metrics["balanced_accuracy_lower"]
    official = evaluation["isic_challenge_score"]  # isic-challenge-scoring, as evaluate logged it
    assert official["balanced_accuracy"] == metrics["isic_balanced_accuracy"] and official["auc"] == metrics["isic_auc"]
    assert evaluation["split"] is None  # the demo's hash split keeps each lesion in one split
    report = first_run.artifact("evaluate", "report")["metadata"]
    assert _rows(card["sliced_metrics"]) == _rows(report["slices"])  # the same slices, sizes included
    clinical = json.loads((version / "clinical.json").read_text())
    assert [p["name"] for p in card["operating_points"]] == [p["name"] for p in clinical["operating_points"]]
    assert card["operating_points"][0]["default"] and card["ood"]["threshold"] == clinical["ood"]["threshold"]
    assert "center" not in card["ood"]  # the detector's parameters are not figures for a reader


def test_the_limitations_are_the_demo_runs(card):
    lines = card["limitations"]
    assert lines[0].startswith("Trained on synthetic demo lesions")
    assert any(line.startswith("Skin type (Fitzpatrick) was not recorded") for line in lines)
    few = [r for r in card["evaluation"]["per_class"] if 0 < r["n"] < 30]
    assert few  # a 240-image demo has fewer than 30 test images of every class
    for row in few:
        assert any(line.startswith(f"{row['class']}: only {row['n']} test image") for line in lines)


def test_the_demo_images_licence_runs_from_ingest_to_the_version(first_run, version):
    """The demo's images are dermpipe's own (CC-0): ingest gives every row that licence, merge and split keep it per
    image, and the version, its attribution file and the deploy summary say commercial use is allowed."""
    import pandas as pd

    assert first_run.artifact("ingest", "dataset")["metadata"]["licence_rows_filled"] == 240
    merged = pd.read_parquet(first_run.artifact("merge", "merged")["uri"])
    assert set(merged["copyright_license"]) == {"CC-0"} and len(merged) == 240
    rows = {n: first_run.artifact("split", n)["metadata"] for n in ("train", "val")}
    assert all(meta["licences"] == {"CC-0": meta["rows"]} for meta in rows.values())
    record = json.loads((version / "dermpipe.json").read_text())["licences"]
    assert record["images"] == rows["train"]["rows"] + rows["val"]["rows"]
    assert (record["commercial_use"], record["unknown"], record["non_commercial"]) == ("allowed", 0, 0)
    assert first_run.artifact("deploy", "pushed")["metadata"]["commercial_use"] == "allowed"
    assert "dermpipe demo data (synthetic lesions" in (version / "attribution.txt").read_text()
    shown = CliRunner().invoke(app, ["models", "show", "1", "--registry-root", str(version.parents[1])])
    assert f"licences: commercial use allowed by all {record['images']} images' licences (CC-0) (CC-0 " \
        f"{record['images']}; attributions: {version / 'attribution.txt'})" in shown.stdout


def test_models_list_and_show_print_the_card(version, home):
    root = str(home / "registry")
    listed = CliRunner().invoke(app, ["models", "list", "--registry-root", root])
    assert listed.exit_code == 0 and "CARD" in listed.stdout.splitlines()[0]
    assert listed.stdout.splitlines()[1].split()[-2:] == ["yes", str(version)]
    shown = CliRunner().invoke(app, ["models", "show", "1", "--registry-root", root])
    assert shown.exit_code == 0, shown.output
    assert f"card: {version / config.MODEL_CARD_HTML}" in shown.stdout
    assert "model: simple_cnn at 32 px" in shown.stdout and "limitations:" in shown.stdout
    assert "  - Trained on synthetic demo lesions" in shown.stdout
    missing = CliRunner().invoke(app, ["models", "show", "9", "--registry-root", root])
    assert missing.exit_code == 2 and "no committed version 9" in missing.stderr


def test_the_ui_serves_each_versions_card(version, home):
    client = TestClient(create_app(Store(home / "lineage.sqlite")))
    page = client.get("/models")
    assert page.status_code == 200 and f'href="/models/{MODEL}/1/card"' in page.text
    assert "<td>allowed</td>" in page.text  # the demo's CC-0 images: dermpipe.json's licences.commercial_use
    card = client.get(f"/models/{MODEL}/1/card")
    assert card.status_code == 200 and card.headers["content-type"].startswith("text/html")
    assert "Model card: dermpipe-isic2019 version 1" in card.text and "sandbox" in card.headers[
        "content-security-policy"]
    assert client.get(f"/models/{MODEL}/1/card.json").json()["model_details"]["version"] == 1
    assert client.get(f"/models/{MODEL}/7/card").status_code == 404
    assert f"/models/{MODEL}/1/card" in client.get("/lineage").text


def test_the_run_summary_names_the_card(first_run, version):
    line = next(line for line in _summary(first_run).splitlines() if line.startswith("model-card"))
    assert line.split()[1] == str(version / config.MODEL_CARD_HTML)


def _decided(*args: str) -> dict:
    result = CliRunner().invoke(app, ["predict", *args, "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_predict_with_a_runs_model_folder_or_id_decides(first_run, isic_sample):
    images = [str(p) for p in sorted((isic_sample / config.IMAGE_SUBDIR).glob("*.jpg"))[:4]]
    folder = first_run.artifact("train", "model")["uri"]
    profile = first_run.artifact("profile", "profile")["uri"]
    by_folder, by_run = _decided(*images, "--model", folder), _decided(*images, "--model", first_run.run_id)
    for answer in (by_folder, by_run):
        # the run that wrote the profile: this one, or an identical earlier run of the session whose cache it reused
        assert answer["decision_from"].startswith("the profile of run dermpipe-training-")
        assert answer["decision_from"].endswith(f" ({profile})")
        assert [p["decision"] in DECISIONS for p in answer["predictions"]] == [True] * len(images)
        assert {p["operating_point"] for p in answer["predictions"]} == {"melanoma_sens95"}
    assert by_run["model"] == f"run {first_run.run_id}'s model ({folder})"
    assert [p["top"] for p in by_run["predictions"]] == [p["top"] for p in by_folder["predictions"]]
    named = _decided(images[0], "--model", folder, "--operating-point", "melanoma_sens99")
    assert named["predictions"][0]["operating_point"] == "melanoma_sens99"
