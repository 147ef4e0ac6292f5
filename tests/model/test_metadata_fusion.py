"""Metadata fusion end to end: the encoding, the fusion model, training from files and from shards, export with
metadata, evaluation, Grad-CAM and profiling of a fusion model.

The synthetic set makes the point: images are noise and the label is the anatomic site's index, so only a model that
reads the metadata can beat chance (1/8)."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dermpipe import config
from dermpipe.model.metadata_inputs import (
    ENCODED_WIDTH,
    FEATURE_NAMES,
    coverage,
    encode_metadata,
    image_size,
    model_inputs,
    raw_columns,
    takes_metadata,
    unknown_values,
)
from dermpipe.model.training.inputs import shard_inputs
from dermpipe.model.training.loop import train_model
from dermpipe.model.training.report import metadata_metrics
from dermpipe.model.training.train import TrainParams
from dermpipe.model.zoo import build_classifier, load_classifier

SIZE = 16
FAST = {"backbone": "simple_cnn", "image_size": SIZE, "batch_size": 16, "learning_rate": 1e-2, "epochs": 6,
        "patience": 6}


def _site_column(i: int) -> int:
    return i % len(config.SITES)


@pytest.fixture(scope="module")
def site_set(tmp_path_factory):
    """(dataset dir, train, val, test): 16-px noise images, label = index of the row's site (8 sites, 8 classes);
    every 5th age, every 3rd sex missing."""
    root = tmp_path_factory.mktemp("sites")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(288):
        site = _site_column(i)
        path = f"img{i:03d}.png"
        Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)).save(root / path)
        rows.append({"image": f"ISIC_{i:07d}", "path": path, "label": config.CLASSES[site], "label_index": site,
                     "age_approx": np.nan if i % 5 == 0 else float(5 * rng.integers(1, 18)),
                     "sex": [config.SEXES[0], config.SEXES[1], None][i % 3],
                     "anatom_site_general": config.SITES[site], "lesion_id": f"L{i}"})
    table = pd.DataFrame(rows)
    return root, table.iloc[:160].reset_index(drop=True), table.iloc[160:240].reset_index(drop=True), \
        table.iloc[240:].reset_index(drop=True)


@pytest.fixture(scope="module")
def fusion_trained(site_set):
    root, train, val, _ = site_set
    # 10 epochs, not FAST's 6: CPU training is not bit-reproducible across processes, and after 6 an unlucky run
    # (seen once in a parallel test run) sat at 19 of 24 test images, under the 0.8 the tests below need.
    return train_model(train, val, root, TrainParams(**{**FAST, "epochs": 10}, metadata_fusion=True), verbose=0)


# ------------------------------------------------------------------------------------------------ encoding

def test_encoding_values_with_missing_and_unknown():
    encoded = encode_metadata([45, None, -1, float("nan")], ["male", "", "FEMALE ", "other"],
                              ["head/neck", None, "palms/soles", "scalp"])
    assert encoded.shape == (4, ENCODED_WIDTH) and len(FEATURE_NAMES) == ENCODED_WIDTH == 2 + 3 + 9
    named = [dict(zip(FEATURE_NAMES, row, strict=True)) for row in encoded]
    assert named[0]["age"] == pytest.approx(0.45) and named[0]["age_missing"] == 0
    assert named[0]["sex=male"] == 1 and named[0]["site=head/neck"] == 1
    for row in named[1:]:
        assert row["age"] == 0 and row["age_missing"] == 1  # None, -1 (the shards' missing) and NaN
    assert named[1]["sex=unknown"] == 1 and named[1]["site=unknown"] == 1
    assert named[2]["sex=female"] == 1 and named[2]["site=palms/soles"] == 1  # case and spaces do not matter
    assert named[3]["sex=unknown"] == 1 and named[3]["site=unknown"] == 1  # out of vocabulary = unknown
    np.testing.assert_array_equal(encoded[:, 2:5].sum(axis=1), 1)  # exactly one sex column per row
    np.testing.assert_array_equal(encoded[:, 5:].sum(axis=1), 1)


def test_coverage_counts_missing_and_unknown_values():
    table = pd.DataFrame({"age_approx": [30.0, np.nan, -1.0], "sex": ["male", None, "x"],
                          "anatom_site_general": ["", "scalp", "oral/genital"]})
    assert coverage(table) == {"rows": 3, "age_missing": 2, "sex_missing": 1, "sex_unknown": 1, "site_missing": 1,
                               "site_unknown": 1}
    assert unknown_values(table) == {"sex": ["x"], "anatom_site_general": ["scalp"]}
    assert coverage(pd.DataFrame({"image": ["a", "b"]}))["site_missing"] == 2  # absent columns: all missing


# ------------------------------------------------------------------------------------------------ model

def test_default_model_is_image_only_and_fusion_keeps_the_image_embedding():
    plain, _ = build_classifier("simple_cnn", SIZE, 8, seed=1)
    fused, _ = build_classifier("simple_cnn", SIZE, 8, seed=1, metadata_fusion=True)
    assert not takes_metadata(plain) and len(plain.inputs) == 1 and plain.name == "dermpipe_simple_cnn"
    assert takes_metadata(fused) and image_size(fused) == image_size(plain) == SIZE
    assert fused.get_layer("pool").output.shape == plain.get_layer("pool").output.shape  # the drift contract
    assert {"metadata_encoding", "metadata_dense", "fusion"} <= {layer.name for layer in fused.layers}
    assert not {"metadata_encoding", "fusion"} & {layer.name for layer in plain.layers}


def test_fusion_model_answers_differ_with_the_metadata():
    model, _ = build_classifier("simple_cnn", SIZE, 8, seed=3, metadata_fusion=True)
    pixels = np.random.default_rng(1).uniform(0, 255, (2, SIZE, SIZE, 3)).astype("float32")
    known = {"age_approx": np.array([70.0, 70.0], np.float32), "sex": np.array(["male", "male"]),
             "anatom_site_general": np.array(["head/neck", "head/neck"])}
    with_meta = np.asarray(model(model_inputs(model, pixels, known)))
    unknown = np.asarray(model(model_inputs(model, pixels, None)))
    np.testing.assert_allclose(with_meta.sum(axis=1), 1, atol=1e-5)
    assert np.abs(with_meta - unknown).max() > 1e-4


def test_fusion_model_builds_and_answers_under_mixed_precision():
    import keras

    keras.mixed_precision.set_global_policy("mixed_float16")  # what train sets on a GPU node
    try:
        model, _ = build_classifier("simple_cnn", SIZE, 8, seed=2, metadata_fusion=True)
        pixels = np.full((2, SIZE, SIZE, 3), 128.0, np.float32)
        out = model(model_inputs(model, pixels, raw_columns(pd.DataFrame({"age_approx": [40.0, None]}))))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.get_layer("metadata_encoding").compute_dtype == "float32"
    assert out.dtype.name == "float32" and np.allclose(np.asarray(out).sum(axis=1), 1, atol=1e-3)


# ------------------------------------------------------------------------------------------------ training

def test_fusion_model_learns_from_the_site_and_the_image_only_model_cannot(site_set, fusion_trained):
    root, train, val, _ = site_set
    model, report = fusion_trained
    _, plain = train_model(train, val, root, TrainParams(**{**FAST, "epochs": 3}), verbose=0)
    assert report["validation"]["balanced_accuracy"] > 0.8, report["history"]
    assert plain["validation"]["balanced_accuracy"] < 0.35  # chance is 0.125: noise images carry no label
    assert report["params"]["metadata_fusion"] is True and "metadata" not in plain
    assert report["metadata"]["train"] == {"rows": 160, "age_missing": 32, "sex_missing": 53, "sex_unknown": 0,
                                           "site_missing": 0, "site_unknown": 0}
    assert metadata_metrics(report)["metadata_val_sex_missing"] == int(val["sex"].isna().sum())
    assert takes_metadata(model)


def test_fusion_trains_from_shards_with_oversampling_and_cache(site_set, tmp_path):
    from dermpipe.data.prepare import prepare_shards

    root, train, val, _ = site_set
    shards = tmp_path / "shards"
    prepare_shards(root, {"train": train, "val": val}, shards, image_size=SIZE, shard_bytes=20_000)
    examples, n_train, _, _, val_labels = shard_inputs(shards, train, val, SIZE, metadata=True)
    first = list(examples.take(40).as_numpy_iterator())
    assert n_train == len(train) and len(val_labels) == len(val)
    for x, label in first:  # the shards' raw metadata travels with its own record
        assert set(x) == {"image", "age_approx", "sex", "anatom_site_general"}
        assert config.SITES.index(x["anatom_site_general"].decode()) == label
        assert x["age_approx"] == -1.0 or x["age_approx"] >= 5
    assert {x["sex"].decode() for x, _ in first} == {"", *config.SEXES}
    params = TrainParams(**{**FAST, "epochs": 5}, metadata_fusion=True, class_balance="oversample", cache="memory")
    model, report = train_model(train, val, root, params, verbose=0, shards_dir=shards)
    assert report["input"] == "tfrecord-shards" and takes_metadata(model)
    assert report["validation"]["balanced_accuracy"] > 0.6, report["history"]


# ------------------------------------------------------------------------------------------------ downstream

def test_export_takes_metadata_and_matches_the_keras_model(fusion_trained, site_set, tmp_path):
    import tensorflow as tf

    from dermpipe.model.export import check_serving_model, export_serving_model, metadata_tensors

    model, _ = fusion_trained
    root, _, _, test = site_set
    description = export_serving_model(model, tmp_path / "saved")
    assert description["metadata_inputs"] == ["age_approx", "sex", "anatom_site_general"]
    assert check_serving_model(tmp_path / "saved", 8)["metadata"] is True
    loaded = tf.saved_model.load(str(tmp_path / "saved"))
    rows = test.head(4)
    images = [(root / p).read_bytes() for p in rows["path"]]
    metas = [{"age_approx": None if pd.isna(r.age_approx) else r.age_approx, "sex": r.sex,
              "anatom_site_general": r.anatom_site_general} for r in rows.itertuples()]
    answer = loaded.signatures["serving_default"](image_bytes=tf.constant(images), **metadata_tensors(metas))
    pixels = np.stack([np.asarray(Image.open(root / p).convert("RGB"), np.float32) for p in rows["path"]])
    expected = np.asarray(model(model_inputs(model, pixels, raw_columns(rows)), training=False))
    np.testing.assert_allclose(answer["probabilities"].numpy(), expected, atol=1e-5)
    blind = loaded.signatures["serving_default"](image_bytes=tf.constant(images), **metadata_tensors([None] * 4))
    assert np.abs(blind["probabilities"].numpy() - expected).max() > 0.1  # the signature passes the metadata on
    pixel_answer = loaded.signatures["serve_pixels"](image=tf.constant(pixels), **metadata_tensors(metas))
    np.testing.assert_allclose(pixel_answer["probabilities"].numpy(), expected, atol=1e-5)
    assert answer["embedding"].shape[-1] == model.get_layer("pool").output.shape[-1]


def test_evaluate_explain_and_profile_take_a_saved_fusion_model(fusion_trained, site_set, tmp_path):
    from dermpipe.data.images import load_images
    from dermpipe.model.evaluation.evaluate import predict_table, predictions_frame
    from dermpipe.model.evaluation.gradcam import CAM_METHODS, cam_maps, select_examples
    from dermpipe.model.profile.features import model_outputs

    model, _ = fusion_trained
    model.save(tmp_path / "model.keras")
    loaded = load_classifier(tmp_path / "model.keras")
    root, _, _, test = site_set
    plain = predict_table(loaded, test, root, SIZE)
    tta = predict_table(loaded, test, root, SIZE, tta=True)
    assert plain.shape == (len(test), 8) and (plain.argmax(1) == test["label_index"]).mean() > 0.8
    assert (tta.argmax(1) == test["label_index"]).mean() > 0.8
    predictions = predictions_frame(test, plain)
    assert {"age_approx", "sex", "anatom_site_general"} <= set(predictions.columns)
    examples = select_examples(predictions, 1)
    images = load_images(examples, root, SIZE)
    for method in CAM_METHODS:
        maps = cam_maps(loaded, images, examples["predicted_index"].tolist(), method, raw_columns(examples))
        assert maps.shape == (len(examples), SIZE, SIZE) and 0 <= maps.min() and maps.max() <= 1
    probabilities, embedding = model_outputs(loaded, [root / p for p in test["path"]], metadata=test)
    np.testing.assert_allclose(probabilities, plain, atol=1e-5)
    assert embedding.shape == (len(test), loaded.get_layer("pool").output.shape[-1])
    blind, _ = model_outputs(loaded, [root / p for p in test["path"]])  # no metadata: every value unknown
    assert (blind.argmax(1) == test["label_index"]).mean() < 0.5


@pytest.mark.slow  # the whole stage (SavedModel export) plus a fresh Python process loading model.keras: ~15-20 s
@pytest.mark.filterwarnings("ignore:Model doesn't support `jit_compile=True`")
def test_train_stage_records_metadata_counts_and_drops_xla(site_set, tmp_path, capsys):
    from kfp.dsl import Dataset, Metrics, Model

    from dermpipe.model.training.train import run

    root, train, val, _ = site_set
    artifacts = {}
    for name, table in (("train", train.head(32)), ("val", val.head(16))):
        table.to_parquet(tmp_path / f"{name}.parquet")
        artifacts[name] = Dataset(uri=str(tmp_path / f"{name}.parquet"))
    model = Model(uri=str(tmp_path / "model"))
    stats = Metrics(uri=str(tmp_path / "stats"))
    run(Dataset(uri=str(root)), artifacts["train"], artifacts["val"], model, stats, None,
        TrainParams(**{**FAST, "epochs": 1}, metadata_fusion=True, jit_compile=True))
    assert "XLA cannot compile string ops" in capsys.readouterr().out
    assert model.metadata["runtime"]["jit_compile"] is False
    assert model.metadata["metadata_fusion"] is True
    assert model.metadata["metadata_coverage"]["train"]["age_missing"] == int(train.head(32)["age_approx"].isna().sum())
    assert stats.metadata["metadata_train_sex_missing"] == int(train.head(32)["sex"].isna().sum())
    training = json.loads((tmp_path / "model" / "training.json").read_text())
    assert training["serving"]["metadata_inputs"] == ["age_approx", "sex", "anatom_site_general"]
    # a stage loads model.keras in a fresh process, through dermpipe.model.zoo only (the profile task did, and failed)
    loaded = subprocess.run([sys.executable, "-c", "import sys; from dermpipe.model.zoo import load_classifier; "
                             "print(sorted(t.name for t in load_classifier(sys.argv[1]).inputs))",
                             str(tmp_path / "model" / "model.keras")], capture_output=True, text=True, timeout=300)
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert loaded.stdout.strip().splitlines()[-1] == "['age_approx', 'anatom_site_general', 'image', 'sex']"


# ------------------------------------------------------------------------------------------------ serving

def test_micro_batcher_hands_each_images_metadata_to_a_fusion_model():
    import asyncio

    from dermpipe.serving.batching import MicroBatcher

    class FusionModel:
        metadata_inputs = True

        def __init__(self):
            self.calls = []

        def predict(self, images, metas=None):
            self.calls.append((list(images), list(metas)))
            values = np.zeros((len(images), 8), np.float32)
            return values, values[:, :2]

    async def main(model):
        batcher = MicroBatcher(max_batch=8, max_wait_s=0.2)
        batcher.start()
        await asyncio.gather(batcher.submit(model, [b"a", b"b"], [{"sex": "male"}, None]),
                             batcher.submit(model, [b"c"]))
        await batcher.stop()

    model = FusionModel()
    asyncio.run(main(model))
    assert model.calls == [([b"a", b"b", b"c"], [{"sex": "male"}, None, None])]  # one call, metadata in image order


# ------------------------------------------------------------------------------------------------ pipeline, CLI

def test_pipeline_parameter_reaches_the_train_task_and_is_off_by_default(tmp_path):
    import yaml

    from dermpipe.pipelines.compile import compile_training

    docs = [d for d in yaml.safe_load_all(compile_training(tmp_path / "t.yaml").read_text()) if d]
    assert docs[0]["root"]["inputDefinitions"]["parameters"]["metadata_fusion"]["defaultValue"] is False
    train_inputs = docs[0]["root"]["dag"]["tasks"]["train"]["inputs"]["parameters"]
    assert train_inputs["metadata_fusion"]["componentInputParameter"] == "metadata_fusion"


def test_run_flag_sets_the_pipeline_parameter(run_local_calls):
    from typer.testing import CliRunner

    from dermpipe.cli.main import app

    seen = run_local_calls
    CliRunner().invoke(app, ["run", "--metadata-fusion"])
    CliRunner().invoke(app, ["run"])
    assert [p["metadata_fusion"] for p in seen] == [True, False]
