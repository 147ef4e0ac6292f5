"""The model card built from real kit tables: collections and licences from lesion ids, counts per class and split,
limitations written from the data (no skin type, classes with few test images, missing metadata), and a version
whose sources are gone says what is missing instead of failing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dermpipe import config
from dermpipe.deploy.model_card import CardInputs, build_card, collections, write_card
from dermpipe.deploy.model_card_limits import FEW_TEST_IMAGES

HAM = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ham10000"  # the real kits (tests/conftest)


def _kit_table(folder: Path) -> pd.DataFrame:
    """A split-like table of a kit: image, label, label_index and the metadata columns."""
    truth = pd.read_csv(folder / config.GROUND_TRUTH_CSV)
    truth["label"] = truth[list(config.CLASSES)].idxmax(axis=1)
    truth["label_index"] = truth["label"].map(config.CLASSES.index)
    return truth[["image", "label", "label_index"]].merge(pd.read_csv(folder / config.METADATA_CSV), on="image")


def _predictions(table: pd.DataFrame, accuracy: float = 0.7, seed: int = 0) -> pd.DataFrame:
    """The evaluate stage's predictions table for `table`: right with probability `accuracy`, else a random class."""
    rng = np.random.default_rng(seed)
    right = rng.random(len(table)) < accuracy
    predicted = np.where(right, table["label_index"], rng.integers(0, len(config.CLASSES), len(table)))
    probabilities = np.full((len(table), len(config.CLASSES)), 0.02)
    probabilities[np.arange(len(table)), predicted] = 1 - 0.02 * (len(config.CLASSES) - 1)
    out = table.assign(predicted_index=predicted, predicted=[config.CLASSES[i] for i in predicted])
    return out.assign(**{f"p_{cls}": probabilities[:, i] for i, cls in enumerate(config.CLASSES)})


@pytest.fixture(scope="module")
def ham_card(isic_sample) -> tuple[dict, dict[str, pd.DataFrame]]:
    """A card over HAM10000 split as DermaMNIST splits it: its train images train, its val images test."""
    table = _kit_table(HAM).merge(pd.read_csv(HAM / "dermamnist_split.csv")[["image", "split"]], on="image")
    train, test = table[table["split"] == "train"], _predictions(table[table["split"] == "val"])
    record = {"model_name": config.MODEL_NAME, "version": 3, "training": {"params": {"backbone": "efficientnet_b0"}},
              "evaluation": {"balanced_accuracy": 0.61, "balanced_accuracy_lower": 0.55,
                             "balanced_accuracy_upper": 0.66, "test_rows": len(test)}}
    profile = pd.concat([train.assign(split="train"), test.assign(split="test")])
    card = build_card(CardInputs(record, None, {}, profile, {"train": train, "test": test}))
    return card, {"train": train, "test": test}


def test_collections_and_licences_come_from_the_lesion_ids_of_the_full_isic_2019_metadata(isic_csv):
    metadata = pd.read_csv(isic_csv / config.METADATA_CSV)
    found = {c["collection"]: c for c in collections([metadata])}
    ids = metadata["lesion_id"].fillna("")
    assert found["HAM10000 (part of ISIC 2019)"]["images"] == ids.str.startswith("HAM_").sum() > 9000
    assert found["BCN20000 (part of ISIC 2019)"]["images"] == ids.str.startswith("BCN_").sum() > 5000
    assert found["MSK (part of ISIC 2019)"]["images"] == ids.str.startswith("MSK").sum() > 0
    assert all(found[name]["licence"] == "CC-BY-NC 4.0" for name in found if "ISIC 2019" in name)
    unknown = found["collection not recorded (no lesion_id)"]
    assert unknown["images"] == (ids == "").sum() > 1000 and "CC-BY-NC 4.0" in unknown["licence"]
    assert sum(c["images"] for c in found.values()) == len(metadata)


def test_counts_per_class_and_split_are_the_kits(ham_card):
    card, tables = ham_card
    data = card["training_data"]
    for split, table in tables.items():
        assert data["counts_per_class"][split] == {cls: int((table["label"] == cls).sum()) for cls in config.CLASSES}
    assert [c["collection"] for c in data["collections"]] == ["HAM10000 (part of ISIC 2019)"]
    site = data["metadata_missing_share"]["train"]["anatomic site"]
    assert site == pytest.approx(tables["train"]["anatom_site_general"].isna().mean(), abs=1e-4) and site > 0.1


def test_limitations_are_written_from_the_data(ham_card):
    card, tables = ham_card
    lines = card["limitations"]
    assert any(line.startswith("Skin type (Fitzpatrick) was not recorded") for line in lines)
    counts = tables["test"]["label"].value_counts()
    few = {cls for cls in config.CLASSES if counts.get(cls, 0) < FEW_TEST_IMAGES}
    assert few == {"AK", "DF", "SCC", "VASC"}  # DermaMNIST's val split: 9, 11, 24 and 12 images
    for cls in config.CLASSES:
        named = [line for line in lines if line.startswith(f"{cls}: only ")]
        assert bool(named) == (cls in few), (cls, named)
        if named:
            assert f"only {counts[cls]} test images" in named[0]
    assert any(line.startswith("Anatomic site is missing for 17% of train") for line in lines)
    assert not any("synthetic" in line for line in lines)
    assert "No operating points or OOD calibration (no clinical.json)" in " ".join(lines)


def test_per_class_recall_has_a_wilson_interval_that_narrows_with_images(ham_card):
    card, tables = ham_card
    rows = {r["class"]: r for r in card["evaluation"]["per_class"]}
    for row in rows.values():
        low, high = row["recall_interval"]
        assert 0 <= low <= high <= 1
    width = {cls: r["recall_interval"][1] - r["recall_interval"][0] for cls, r in rows.items()}
    assert width["NV"] < 0.08 < 0.25 < width["AK"]  # 671 images against 9
    assert card["evaluation"]["balanced_accuracy_interval"]["lower"] == 0.55
    assert sum(s["n"] for s in card["sliced_metrics"]["sex"]) == len(tables["test"])


def test_a_version_whose_sources_are_gone_says_what_is_missing(tmp_path):
    record = {"model_name": config.MODEL_NAME, "version": 1, "source_model_uri": str(tmp_path / "gone"),
              "evaluation_uri": str(tmp_path / "gone" / "evaluate" / "metrics"),
              "training": {"train_uri": str(tmp_path / "gone" / "train")}, "evaluation": {}}
    (tmp_path / "dermpipe.json").write_text(json.dumps(record))
    card = write_card(str(tmp_path))
    missing = " ".join(card["missing"])
    for what in ("clinical.json", "training.json", "training split table: ", "validation split table: not recorded",
                 "evaluate's test predictions: ", "reference profile"):
        assert what in missing, what
    assert any(line.startswith("Not available when this card was written: training split table") for line in
               card["limitations"])
    html = (tmp_path / "model_card.html").read_text()
    assert "Not available: evaluate's test predictions could not be read" in html
    assert json.loads((tmp_path / "model_card.json").read_text())["model_details"]["version"] == 1


def test_an_override_an_unachievable_point_and_ood_figures_are_carried_as_recorded():
    from dermpipe.cli.model_card import card_lines

    override = {"reason": "pilot on our own 475 images", "user": "dr_a", "at": "2026-12-07T10:00:00+00:00",
                "failed_rules": ["bma_lower_above_chance"]}
    point = {"name": "melanoma_sens95", "threshold": 0.3, "target_sensitivity": 0.95, "valid": False,
             "invalid": "specificity 0.05 on val is under the floor 0.20", "chosen": {"net_benefit": -0.01}}
    clinical = {"default_operating_point": "melanoma_sens95", "operating_points": [point],
                "ood": {"threshold": 2.0, "center": [0.1, 0.2], "served_score": "energy",
                        "candidates": {"energy": {"near": {"auroc": 0.91, "fpr_at_95_tpr": 0.4}}}}}
    record = {"model_name": config.MODEL_NAME, "version": 2, "gate_override": override, "evaluation": {}}
    card = build_card(CardInputs(record, clinical, {}, None, {}, ["training split table: not recorded"]))
    assert card["gate"]["decision"].startswith("deployed by a person's override") and card["gate"]["user"] == "dr_a"
    assert ("Operating point melanoma_sens95 is not achievable by this model: specificity 0.05 on val is under the "
            "floor 0.20; it never decides.") in card["limitations"]
    assert card["operating_points"][0]["chosen"]["net_benefit"] == -0.01 and card["operating_points"][0]["default"]
    assert card["ood"]["candidates"]["energy"]["near"]["auroc"] == 0.91 and "center" not in card["ood"]
    assert not any(line.startswith("Out-of-distribution flag") for line in card["limitations"])
    clinical["ood"] |= {"threshold_holds_on_test": False, "transfer_note": "14/45 test images flagged (31.1%, 95 % "
                        "CI 19.5% to 45.7%) against 5% intended"}
    unheld = build_card(CardInputs(record, clinical, {}, None, {}, []))["limitations"]
    assert ("Out-of-distribution flag (energy): 14/45 test images flagged (31.1%, 95 % CI 19.5% to 45.7%) against 5% "
            "intended.") in unheld
    assert card["limitations"][0].startswith("Skin type: the training tables could not be read")
    text = "\n".join(card_lines(card, "/registry/m/2"))
    assert "(reason: pilot on our own 475 images, user: dr_a, at: 2026-12-07T10:00:00+00:00)" in text
    assert "failed: bma_lower_above_chance" in text


def test_a_cross_validated_ensemble_counts_its_out_of_fold_images(tmp_path, isic_sample):
    """An ensemble trained fold by fold on train+val: its OOF predictions (the real ISIC sample's 475 images here)
    give the counts, its first member's training.json the parameters, its metadata the members and CV scores."""
    table = _kit_table(isic_sample)
    ensemble, member, version = tmp_path / "ensemble", tmp_path / "member", tmp_path / "version"
    for folder in (ensemble, member, version):
        folder.mkdir()
    _predictions(table).to_parquet(ensemble / "oof_predictions.parquet")
    (member / "training.json").write_text(json.dumps({"params": {"backbone": "resnet50", "image_size": 224}}))
    meta = {"ensemble": True, "members": [str(member), str(tmp_path / "m2")], "configurations": ["default"],
            "oof_predictions": "oof_predictions.parquet", "cv_balanced_accuracy_mean": 0.62}
    record = {"model_name": config.MODEL_NAME, "version": 4, "source_model_uri": str(ensemble), "training": meta,
              "evaluation": {"test_rows": 48}}
    (version / "dermpipe.json").write_text(json.dumps(record))
    card = write_card(str(version))
    data, details = card["training_data"], card["model_details"]
    assert data["counts_per_class"]["train+val"] == {"MEL": 114, "NV": 361, **{c: 0 for c in config.CLASSES[2:]}}
    assert data["rows"] == {"train+val": 475, "test": 48} and "train" not in data["counts_per_class"]
    assert (details["architecture"], details["image_size"]) == ("resnet50", 224)
    assert details["ensemble"] == {"members": 2, "configurations": ["default"], "cv_balanced_accuracy_mean": 0.62}
    assert "No training images of BCC, AK, BKL, DF, VASC, SCC: the model cannot recognise these diagnoses." in \
        card["limitations"]
    assert data["collections"] == [{"collection": "collection not recorded (no lesion_id)", "images": 475,
                                    "licence": data["collections"][0]["licence"]}]


def test_the_decision_curve_is_the_test_splits_net_benefit_on_the_calibrated_melanoma_probability(ham_card):
    """The card's curve is Vickers & Elkin's net benefit of the version's own test predictions, temperature-scaled
    as the server scales them: recomputed here from the formula, and it differs from the uncalibrated curve."""
    from dermpipe.deploy.model_card import decision_curve

    _, tables = ham_card
    test = tables["test"]
    point = {"name": "melanoma_sens95", "threshold": 0.3, "target_sensitivity": 0.95, "valid": True}
    clinical = {"default_operating_point": "melanoma_sens95", "operating_points": [point],
                "calibration": {"method": "temperature", "temperature": 2.0}}
    numbers, figures = decision_curve(CardInputs({}, clinical, {}, None, {"test": test}))
    p = test[[f"p_{c}" for c in config.CLASSES]].to_numpy()
    scaled = np.exp(np.log(p) / 2.0)
    scaled = scaled[:, config.CLASSES.index("MEL")] / scaled.sum(axis=1)
    positive = (test["label"] == "MEL").to_numpy()
    at = numbers["threshold_probability"].index(0.05)  # uncalibrated, only the images predicted MEL pass 0.05
    referred = scaled >= 0.05
    expected = (referred & positive).mean() - (referred & ~positive).mean() * 0.05 / 0.95
    assert numbers["model"][at] == pytest.approx(expected, abs=1e-4)
    assert numbers["refer_all"][at] == pytest.approx(positive.mean() - (~positive).mean() / 19, abs=1e-4)
    assert set(numbers["refer_none"]) == {0.0} and figures.count("<img") == 2
    assert f"{len(test)} images, {positive.sum()} melanomas" in numbers["evaluated_on"]
    assert decision_curve(CardInputs({}, None, {}, None, {"test": test})) == (None, "")


def test_the_official_challenge_score_and_a_by_image_split_reach_the_card(tmp_path):
    """HAM10000 split by the DermaMNIST file (split_method=file, by image): the findings the split stage annotates and
    the score isic-challenge-scoring gives evaluate's test predictions, through evaluate's metrics into the card."""
    from dermpipe.data.merge import merge_tables, read_isic_csv
    from dermpipe.data.split import split_table
    from dermpipe.data.split_file import FINDINGS_KEY, evaluation_metrics, read_split_file
    from dermpipe.deploy.model_card_html import render
    from dermpipe.model.evaluation import challenge_score

    truth, meta = read_isic_csv(HAM / config.GROUND_TRUTH_CSV), read_isic_csv(HAM / config.METADATA_CSV)
    kit = merge_tables(truth, meta, {i: f"ISIC_2019_Training_Input/{i}.jpg" for i in truth["image"]}).table
    splits = split_table(kit, method="file", given=read_split_file(str(HAM / "dermamnist_split.csv")), seed=42)
    test = _predictions(splits.test, seed=1)
    official = challenge_score.official_score(test["image"].tolist(), test["label_index"].to_numpy(),
                                              test[[f"p_{c}" for c in config.CLASSES]].to_numpy(), config.CLASSES)
    annotated = {"params": {"method": "file"}, FINDINGS_KEY: splits.findings.metrics()}  # as split.run annotates
    record = {"model_name": config.MODEL_NAME, "version": 4, "evaluation": {
        "balanced_accuracy": 0.6, "test_rows": len(test), **challenge_score.metric_values(official),
        **evaluation_metrics(annotated)}}
    card = build_card(CardInputs(record, None, {}, None, {"train": splits.train, "test": test}))

    score = card["evaluation"]["isic_challenge_score"]
    assert score["balanced_accuracy"] == official.balanced_accuracy and score["scorer"] == "isic-challenge-scoring"
    assert score["auc"] == official.macro["auc"] and score["ap"] == official.macro["ap"]
    assert set(score["per_class"]) == set(official.scored)
    assert score["per_class"]["MEL"]["auc_sens_80"] == official.per_class["MEL"]["auc_sens_80"]
    seen = splits.findings.test_rows_seen
    assert seen == 346 and card["evaluation"]["split"]["test_rows_with_lesion_in_train_or_val"] == seen
    (caveat,) = [line for line in card["limitations"] if "split_method=file" in line]
    assert f"{seen} test images have another image of the same lesion in train or val (330 lesion groups" in caveat
    assert "may be optimistic" in caveat
    html = render(card)
    assert "<h3>ISIC challenge score</h3>" in html and f"{official.balanced_accuracy:.4g}" in html
    from dermpipe.cli.model_card import card_lines

    (line,) = [line for line in card_lines(card, str(tmp_path)) if line.startswith("ISIC challenge score: ")]
    assert line.startswith(f"ISIC challenge score: BMA {official.balanced_accuracy:.3f}, mean AUC ")


def test_a_lesion_grouped_split_and_a_version_without_the_official_score_say_so(ham_card):
    card, _ = ham_card  # evaluated before the scorer: no isic_* metrics; split by dermpipe, not from a file
    assert card["evaluation"]["isic_challenge_score"] is None and card["evaluation"]["split"] is None
    assert not any("split_method=file" in line for line in card["limitations"])
    from dermpipe.deploy.model_card_html import render

    assert "Not recorded: this version was evaluated before evaluate ran the official scorer" in render(card)
