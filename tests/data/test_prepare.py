"""prepare: centre-crop resize, TFRecord shards in the training contract, shard manifest; real sample images."""

import io
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dermpipe.data.prepare import prepare_metrics, prepare_shards
from dermpipe.data.shards import centre_crop_resize, load_manifest, shard_files, shard_records
from dermpipe.lineage.artifacts import sha256_file


def _jpeg(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, "JPEG", quality=98)
    return out.getvalue()


def test_centre_crop_keeps_the_middle_without_padding():
    """A 300x200 image in three colour bands: the 200x200 centre crop holds red | green | blue in 1:2:1."""
    image = np.zeros((200, 300, 3), np.uint8)
    image[:, :100] = (220, 30, 30)
    image[:, 100:200] = (30, 220, 30)
    image[:, 200:] = (30, 30, 220)
    jpeg, width, height = centre_crop_resize(_jpeg(image), 40)
    assert (width, height) == (300, 200)
    out = np.asarray(Image.open(io.BytesIO(jpeg)))
    assert out.shape == (40, 40, 3)
    assert out[20, 2].argmax() == 0 and out[20, 20].argmax() == 1 and out[20, 37].argmax() == 2
    assert out.min(axis=(0, 1)).max() > 20  # no black padding bars anywhere


def test_large_original_comes_out_at_the_training_size():
    """A 4000x3000 JPEG comes out at the training size."""
    rng = np.random.default_rng(0)
    big = rng.integers(0, 255, (3000, 4000, 3), dtype=np.uint8)
    jpeg, width, height = centre_crop_resize(_jpeg(big), 224)
    assert (width, height) == (4000, 3000)
    assert Image.open(io.BytesIO(jpeg)).size == (224, 224)


@pytest.fixture(scope="module")
def sample_splits(isic_sample, tmp_path_factory):
    from dermpipe.data.ingest import ingest_source
    from dermpipe.data.merge import merge_dataset
    from dermpipe.data.split import split_table

    raw = tmp_path_factory.mktemp("prep") / "raw"
    ingest_source(str(isic_sample), raw)
    merged = merge_dataset(raw).table
    splits = split_table(merged, test_size=0.1, val_size=0.1, seed=42)
    return raw, {"train": splits.train, "val": splits.val, "test": splits.test}


def test_real_sample_shards_follow_the_contract(sample_splits, tmp_path):
    raw, tables = sample_splits
    out = tmp_path / "shards"
    manifest = prepare_shards(raw, tables, out, image_size=64, shard_bytes=150_000)
    (out / "shards.json").write_text(json.dumps(manifest))
    counts = manifest["counts"]
    for split, table in tables.items():
        assert counts[split]["records"] == len(table)
        assert counts[split]["class_counts"]["NV"] == int((table["label"] == "NV").sum())
    assert counts["train"]["shards"] >= 3  # small shard size: several shards
    for shard in manifest["shards"]:
        path = out / shard["file"]
        assert shard["sha256"] == sha256_file(path) and shard["bytes"] == path.stat().st_size
        assert shard["file"].startswith(shard["split"] + "-")
    assert manifest["resize"] == "centre-crop" and manifest["image_encoding"] == "png" and manifest["failed"] == []
    assert prepare_metrics(manifest)["train_records"] == len(tables["train"])

    files = shard_files(out, "val")
    assert load_manifest(out)["counts"]["val"]["shards"] == len(files)
    records = list(shard_records(files).as_numpy_iterator())
    assert len(records) == len(tables["val"])
    val = tables["val"].set_index("image")
    assert {r["image_id"].decode() for r in records} == set(val.index)
    for record in records[:10]:
        row = val.loc[record["image_id"].decode()]
        assert record["label"] == row["label_index"] and record["split"] == b"val"
        assert (record["orig_width"], record["orig_height"]) == (row["width"], row["height"])
        assert record["age_approx"] == (-1.0 if pd.isna(row["age_approx"]) else row["age_approx"])
        assert record["sex"].decode() == ("" if pd.isna(row["sex"]) else row["sex"])
        assert Image.open(io.BytesIO(record["image"])).size == (64, 64)


def test_unreadable_image_is_listed_not_fatal(sample_splits, tmp_path):
    raw, tables = sample_splits
    broken = tables["test"].head(3).copy()
    broken.loc[broken.index[0], "path"] = "does/not/exist.jpg"
    manifest = prepare_shards(raw, {"test": broken}, tmp_path / "s", image_size=32, shard_bytes=10**8)
    assert manifest["counts"]["test"]["records"] == 2
    assert [f["image"] for f in manifest["failed"]] == [broken["image"].iloc[0]]
    assert "FileNotFoundError" in manifest["failed"][0]["reason"]
    with pytest.raises(ValueError, match="shard size must be positive"):
        prepare_shards(raw, {"test": broken}, tmp_path / "t", image_size=32, shard_bytes=0)


def test_shard_pixels_are_the_serving_pixels(sample_splits):
    """What training reads from a shard equals what evaluation and the serving signature compute from the file."""
    import tensorflow as tf

    from dermpipe.data.images import decode_resize_bytes

    raw, tables = sample_splits
    for rel in tables["train"]["path"].iloc[:3]:
        data = (raw / rel).read_bytes()
        png, _, _ = centre_crop_resize(data, 64)
        stored = tf.io.decode_png(png).numpy().astype(np.float32)
        served = decode_resize_bytes(tf.constant(data), 64).numpy()
        assert np.abs(stored - served).max() <= 0.5  # uint8 rounding only
