"""Retraining on feedback: real ISIC images logged through the real PredictionLog (--log-images), labelled through
the label store, join the ingested data set as ISIC rows that keep their lesion / patient grouping; every label that
cannot is listed with its reason. Then merge and split take them like any other row."""

import datetime as dt
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from dermpipe import config
from dermpipe.data.feedback import feedback_fingerprint
from dermpipe.data.ingest import ingest_source
from dermpipe.data.merge import merge_dataset
from dermpipe.data.split import leakage_groups, split_table
from dermpipe.serving.labels import Label, append_labels
from dermpipe.serving.prediction_log import PredictionLog, log_line

MODEL = "derm"
NOW = dt.datetime.now(dt.UTC)


@pytest.fixture(scope="module")
def small_source(isic_sample, tmp_path_factory) -> Path:
    """20 real ISIC 2019 images with their CSV rows (a copy: the test checks the source is never modified)."""
    out = tmp_path_factory.mktemp("isic20")
    images = sorted((isic_sample / config.IMAGE_SUBDIR).glob("*.jpg"))[:20]
    (out / config.IMAGE_SUBDIR).mkdir(parents=True)
    for image in images:
        shutil.copyfile(image, out / config.IMAGE_SUBDIR / image.name)
    names = {p.stem for p in images}
    for csv in (config.GROUND_TRUTH_CSV, config.METADATA_CSV):
        table = pd.read_csv(isic_sample / csv, dtype=str, keep_default_na=False)
        table[table["image"].isin(names)].to_csv(out / csv, index=False)
    return out


def log_request(predlog, rid, data, *, days_ago=1, meta=None, with_image=True):
    """One logged prediction, as Service.log_lines writes it (the image saved by PredictionLog.save_image)."""
    stamp = (NOW - dt.timedelta(days=days_ago)).isoformat(timespec="milliseconds")
    line = log_line(timestamp=stamp, request_id=rid, model_name=MODEL, model_version=1, classes=config.CLASSES,
                    probabilities=[1, 0, 0, 0, 0, 0, 0, 0], stats={}, metadata=meta or {}, embedding_summary=None)
    if with_image:
        line["image_uri"] = predlog.save_image(stamp, f"{rid}.jpg", data)
    predlog.append([line])
    return line


@pytest.fixture()
def feedback_folder(isic_sample, tmp_path) -> tuple[str, list[bytes]]:
    """A served model's log folder: 8 requests of real held-out images, each labelled, 4 usable."""
    jpegs = [p.read_bytes() for p in sorted((isic_sample / config.IMAGE_SUBDIR).glob("*.jpg"))[-8:]]
    predlog = PredictionLog(str(tmp_path / "logs"), MODEL, log_images=True)
    log_request(predlog, "r1", jpegs[0], meta={"lesion_id": "IL_A", "patient_id": "IP_1", "age_approx": 47.0,
                                               "sex": "male", "anatom_site_general": "head/neck"})
    log_request(predlog, "r2-0", jpegs[1], meta={"lesion_id": "IL_A", "patient_id": "IP_1"})
    log_request(predlog, "r2-1", jpegs[2], meta={"patient_id": "IP_9"})
    log_request(predlog, "r3", jpegs[3])
    log_request(predlog, "r4", jpegs[4], with_image=False)  # served without --log-images
    log_request(predlog, "r5", jpegs[5], days_ago=400)  # outside the retention window
    gone = log_request(predlog, "r6", jpegs[6])
    predlog.flush()
    Path(gone["image_uri"]).unlink()  # deleted since (a bucket lifecycle rule)
    append_labels(str(tmp_path / "logs"), MODEL, [Label("r1", "MEL", "biopsy", "2026-11-30"),
                                                  Label("r2-0", "MEL", "biopsy", "2026-11-30"),
                                                  Label("r2-1", "BCC", "consensus", "2026-11-30")])
    append_labels(str(tmp_path / "logs"), MODEL, [Label(r, "NV", "follow-up", "2026-12-01")
                                                  for r in ("r3", "r4", "r5", "r6", "never-logged")])
    return str(tmp_path / "logs" / MODEL), jpegs


def test_labelled_logged_images_join_the_ingested_data_set(small_source, feedback_folder, tmp_path):
    folder, jpegs = feedback_folder
    source_csv = (small_source / config.GROUND_TRUTH_CSV).read_bytes()
    out = tmp_path / "raw"
    summary = ingest_source(str(small_source), out, feedback_log_root=folder, feedback_retention_days=365)
    assert (small_source / config.GROUND_TRUTH_CSV).read_bytes() == source_csv  # the hard-linked source is intact
    assert (summary["feedback_rows_added"], summary["feedback_labels_skipped"]) == (4, 4)
    assert summary["n_images"] == 24
    truth = pd.read_csv(out / config.GROUND_TRUTH_CSV, dtype=str).set_index("image")
    assert len(truth) == 24
    added = truth.loc[["FB_r1", "FB_r2-0", "FB_r2-1", "FB_r3"]]
    assert added[list(config.CLASSES)].astype(float).idxmax(axis=1).tolist() == ["MEL", "MEL", "BCC", "NV"]
    meta = pd.read_csv(out / config.METADATA_CSV, dtype=str, keep_default_na=False).set_index("image")
    assert meta.loc["FB_r1"].to_dict() == {"age_approx": "45.0", "anatom_site_general": "head/neck",
                                           "lesion_id": "IL_A", "sex": "male"}
    assert meta.loc[["FB_r2-0", "FB_r2-1", "FB_r3"], "lesion_id"].tolist() == ["IL_A", "patient:IP_9", ""]
    assert (out / config.IMAGE_SUBDIR / "FB_r2-1.jpg").read_bytes() == jpegs[2]
    report = json.loads((out / "feedback.json").read_text())
    reasons = {s["request_id"]: s["reason"] for s in report["skipped"]}
    assert "the image was not logged" in reasons["r4"]
    assert "before the retention window" in reasons["r5"]
    assert "is gone" in reasons["r6"]
    assert "no prediction-log line" in reasons["never-logged"]
    assert {r["image"]: r["patient_id"] for r in report["rows"]}["FB_r1"] == "IP_1"
    manifest = {f["path"] for f in json.loads((out / "manifest.json").read_text())}
    assert f"{config.IMAGE_SUBDIR}/FB_r1.jpg" in manifest and "feedback.json" in manifest

    merged = merge_dataset(out).table
    feedback_rows = merged[merged["image"].str.startswith("FB_")].set_index("image")
    assert feedback_rows["label"].to_dict() == {"FB_r1": "MEL", "FB_r2-0": "MEL", "FB_r2-1": "BCC", "FB_r3": "NV"}
    assert feedback_rows["lesion_id"].fillna("").tolist() == ["IL_A", "IL_A", "patient:IP_9", ""]
    group = dict(zip(merged["image"], leakage_groups(merged), strict=True))
    assert group["FB_r1"] == group["FB_r2-0"] != group["FB_r2-1"] != group["FB_r3"]
    splits = split_table(merged, test_size=0.25, val_size=0.25, seed=0)
    side = {image: name for name in ("train", "val", "test") for image in getattr(splits, name)["image"]}
    assert side["FB_r1"] == side["FB_r2-0"]  # one lesion, one side of the split


def test_without_retention_limit_old_images_are_kept_and_no_store_is_named(small_source, feedback_folder, tmp_path):
    folder, _ = feedback_folder
    summary = ingest_source(str(small_source), tmp_path / "all", feedback_log_root=folder, feedback_retention_days=0)
    assert summary["feedback_rows_added"] == 5  # r5, 400 days old, too
    with pytest.raises(FileNotFoundError, match="no labels/ folder"):
        ingest_source(str(small_source), tmp_path / "none", feedback_log_root=str(tmp_path / "nowhere"))


def test_fingerprint_changes_when_labels_arrive(feedback_folder, tmp_path):
    folder, _ = feedback_folder
    before = feedback_fingerprint(folder, 365)
    assert before == feedback_fingerprint(folder, 365) and before != feedback_fingerprint(folder, 30)
    append_labels(str(Path(folder).parent), MODEL, [Label("r3", "NV", "biopsy", "2026-12-02")])
    assert feedback_fingerprint(folder, 365) != before
    assert feedback_fingerprint("", 365) == ""


def test_feedback_folder_on_gcs(emulator, small_source, isic_sample, tmp_path):
    """The log and its images as `dermpipe serve` leaves them in a bucket (objects), labels through the store."""
    from dermpipe.storage import make_client

    bucket = make_client().create_bucket(f"feedback{NOW.timestamp():.0f}".replace(".", ""))
    jpeg = sorted((isic_sample / config.IMAGE_SUBDIR).glob("*.jpg"))[-1].read_bytes()
    day = NOW.date().isoformat()
    image_key = f"logs/{MODEL}/date={day}/images/g1.jpg"
    bucket.blob(image_key).upload_from_string(jpeg)
    line = log_line(timestamp=NOW.isoformat(), request_id="g1", model_name=MODEL, model_version=1,
                    classes=config.CLASSES, probabilities=[0, 0, 0, 0, 0, 0, 0, 1], stats={},
                    metadata={"patient_id": "IP_7"}, embedding_summary=None)
    line["image_uri"] = f"gs://{bucket.name}/{image_key}"
    bucket.blob(f"logs/{MODEL}/date={day}/host-1-000001.jsonl").upload_from_string(json.dumps(line) + "\n")
    append_labels(f"gs://{bucket.name}/logs", MODEL, [Label("g1", "SCC", "biopsy", day)])
    out = tmp_path / "raw"
    summary = ingest_source(str(small_source), out, feedback_log_root=f"gs://{bucket.name}/logs/{MODEL}")
    assert (summary["feedback_rows_added"], summary["feedback_labels_skipped"]) == (1, 0)
    assert (out / config.IMAGE_SUBDIR / "FB_g1.jpg").read_bytes() == jpeg
    meta = pd.read_csv(out / config.METADATA_CSV, dtype=str, keep_default_na=False).set_index("image")
    assert meta.at["FB_g1", "lesion_id"] == "patient:IP_7"
