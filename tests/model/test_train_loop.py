"""Training input (bytes -> batches, cache, oversampling), the BMA-driven loop, checkpoint/resume and the stage's
artifacts (model.keras, SavedModel, curves, TensorBoard)."""

import json
from collections import Counter
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from kfp.dsl import HTML, Dataset, Metrics, Model

from dermpipe.data.images import InputOptions, cache_mode, encoded_examples, load_images, oversample, training_dataset
from dermpipe.data.merge import merge_dataset
from dermpipe.data.split import split_table
from dermpipe.model.export import check_serving_model
from dermpipe.model.training.callbacks import checkpoint_location, validation_scores
from dermpipe.model.training.loop import train_model
from dermpipe.model.training.report import curve_metrics
from dermpipe.model.training.train import TrainParams, run
from dermpipe.model.zoo import CAFFE_MEAN_BGR, CaffePreprocess, build_classifier, resolve_weights

TINY = {"backbone": "simple_cnn", "image_size": 32, "batch_size": 16, "patience": 8}


@pytest.fixture(scope="module")
def splits(demo_dataset):
    table = merge_dataset(demo_dataset).table
    return split_table(table, test_size=0.1, val_size=0.2, seed=0)


def test_training_batches_from_encoded_bytes_match_the_decoded_files(demo_dataset, splits):
    rows = splits.train.head(10)
    options = InputOptions(image_size=32, batch_size=4, shuffle=False, cache="memory")
    ds = training_dataset(encoded_examples(rows, demo_dataset), options, n_examples=len(rows))
    batches = list(ds.as_numpy_iterator())
    assert [len(y) for _, y in batches] == [4, 4, 2]
    pixels = np.concatenate([x for x, _ in batches])
    assert pixels.dtype == np.float32 and pixels.shape == (10, 32, 32, 3)
    np.testing.assert_array_equal(pixels, load_images(rows, demo_dataset, 32).round().clip(0, 255))
    np.testing.assert_array_equal(np.concatenate([y for _, y in batches]), rows["label_index"].to_numpy())
    again = np.concatenate([x for x, _ in ds.as_numpy_iterator()])  # the second pass reads the cache
    np.testing.assert_array_equal(again, pixels)


def _full_decode_antialiased(data: bytes, size: int) -> np.ndarray:
    """The expensive reference: full-size decode, centre square, antialiased resize."""
    import tensorflow as tf

    from dermpipe.data.images import centre_square

    image = centre_square(tf.io.decode_image(data, channels=3, expand_animations=False))
    return tf.image.resize(image, (size, size), antialias=True).numpy()


def test_decode_scales_large_jpegs_in_the_dct_domain_within_about_one_level_of_a_full_decode(isic_sample):
    import io

    import tensorflow as tf
    from PIL import Image

    from dermpipe.data.images import decode_resize_bytes

    jpeg = next(isic_sample.rglob("*.jpg")).read_bytes()
    assert min(Image.open(io.BytesIO(jpeg)).size) >= 2 * 64  # large enough for a scaled decode to engage
    ours = decode_resize_bytes(jpeg, 64).numpy()
    reference = _full_decode_antialiased(jpeg, 64)
    assert 0 < np.abs(ours - reference).mean() < 1.5  # not the same computation, but the same picture
    # the scaled decode is what makes it differ: a JPEG decoded at the chosen scale and bilinear-resized is exact
    short = min(Image.open(io.BytesIO(jpeg)).size)
    ratio = max(r for r in (1, 2, 4, 8) if short >= r * 64)
    from dermpipe.data.images import centre_square

    scaled = centre_square(tf.io.decode_jpeg(jpeg, channels=3, ratio=ratio))
    antialias = scaled.shape[0] >= 96  # the residual downscale decides (ANTIALIAS_FROM = 1.5)
    np.testing.assert_allclose(ours, tf.image.resize(scaled, (64, 64), antialias=antialias).numpy(), atol=1e-4)


def test_decode_antialiases_large_non_jpegs_and_keeps_small_jpegs_at_full_scale(isic_sample):
    import io

    from PIL import Image

    from dermpipe.data.images import decode_resize_bytes

    source = Image.open(next(isic_sample.rglob("*.jpg"))).convert("RGB")
    small, png = io.BytesIO(), io.BytesIO()
    source.resize((40, 40)).save(small, format="JPEG")
    source.resize((300, 300)).save(png, format="PNG")  # 300 >= 1.5 x 32: antialiased, like the reference
    np.testing.assert_allclose(decode_resize_bytes(png.getvalue(), 32).numpy(),
                               _full_decode_antialiased(png.getvalue(), 32), atol=1e-4)
    # 40 < 1.5 x 32: plain bilinear, at full scale (40 < 2 x 32: no DCT scaling)
    import tensorflow as tf

    plain = tf.image.resize(tf.io.decode_jpeg(small.getvalue(), channels=3), (32, 32)).numpy()
    np.testing.assert_allclose(decode_resize_bytes(small.getvalue(), 32).numpy(), plain, atol=1e-4)


def test_shuffled_input_is_deterministic_with_a_seed(demo_dataset, splits):
    rows = splits.train.head(24)

    def order(seed):
        options = InputOptions(image_size=16, batch_size=24, seed=seed, deterministic=True)
        ds = training_dataset(encoded_examples(rows, demo_dataset), options, n_examples=len(rows))
        return [next(iter(ds))[0].numpy().sum(axis=(1, 2, 3)) for _ in range(1)][0]

    first, again, other = order(5), order(5), order(6)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_oversampling_draws_every_present_class_equally():
    labels = np.array([1] * 90 + [0] * 8 + [5] * 2)
    ds = tf.data.Dataset.from_tensor_slices((np.arange(100), labels))
    counts = Counter(labels.tolist())
    drawn = [int(y) for _, y in oversample(ds, counts, n_per_epoch=900, seed=1).as_numpy_iterator()]
    assert len(drawn) == 900
    share = {c: n / 900 for c, n in Counter(drawn).items()}
    assert set(share) == {0, 1, 5} and all(abs(s - 1 / 3) < 0.06 for s in share.values())
    with pytest.raises(ValueError, match="all zero"):
        oversample(ds, {0: 0}, 10, seed=1)


def test_shuffled_passes_reorder_each_pass_and_replay_an_epoch_from_fresh_iterators():
    from dermpipe.data.images import shuffled_passes

    def epochs(ds, n):
        return [list(ds.as_numpy_iterator()) for _ in range(n)]

    # an epoch of 12 draws makes 2.4 passes over 5 items: each whole pass is a permutation, and passes differ
    first, second = epochs(shuffled_passes(tf.data.Dataset.range(5), 5, seed=3).take(12), 2)
    passes = [first[i:i + 5] for i in (0, 5)] + [second[i:i + 5] for i in (0, 5)]
    assert all(sorted(p) == [0, 1, 2, 3, 4] for p in passes) and len({tuple(p) for p in passes}) > 1
    # a resume fast-forwards by making iterators, not by reading: epoch 2 must not depend on epoch 1's passes
    fresh = shuffled_passes(tf.data.Dataset.range(5), 5, seed=3).take(12)
    iter(fresh)
    assert list(fresh.as_numpy_iterator()) == second
    unshuffled = shuffled_passes(tf.data.Dataset.range(3), 3, seed=3, shuffle=False).take(7)
    assert list(unshuffled.as_numpy_iterator()) == [0, 1, 2, 0, 1, 2, 0]


def test_oversample_through_training_dataset_needs_the_counts(demo_dataset, splits):
    rows = splits.train
    options = InputOptions(image_size=8, batch_size=500, seed=0)
    counts = Counter(rows["label_index"].tolist())
    ds = training_dataset(encoded_examples(rows, demo_dataset), options, n_examples=len(rows), class_counts=counts,
                          class_balance="oversample")
    (_, y), = list(ds.as_numpy_iterator())
    assert len(y) == len(rows)
    observed = Counter(y.tolist())
    assert max(observed.values()) < 2.5 * len(rows) / len(counts)  # NV no longer dominates
    with pytest.raises(ValueError, match="needs class_counts"):
        training_dataset(encoded_examples(rows, demo_dataset), options, class_balance="oversample")
    with pytest.raises(ValueError, match="class_balance='smote'"):
        training_dataset(encoded_examples(rows, demo_dataset), options, class_balance="smote")


def test_cache_mode_caches_in_memory_only_when_it_fits():
    assert cache_mode("auto", 1000, 224, budget_mb=4096) == "memory"  # 150 MB
    assert cache_mode("auto", 25_331 * 4, 224, budget_mb=4096) == "none"  # 15 GB
    assert cache_mode("auto", None, 224, budget_mb=4096) == "none"
    assert cache_mode("/tmp/cache", 10, 224, budget_mb=1) == "/tmp/cache"


def test_validation_scores_use_balanced_accuracy():
    labels = np.array([0, 0, 0, 1])
    probabilities = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.6, 0.4]], dtype="float32")
    scores = validation_scores(labels, probabilities, keras.losses.SparseCategoricalCrossentropy(), False, 2)
    assert scores["val_accuracy"] == 0.75 and scores["val_balanced_accuracy"] == 0.5
    expected_loss = -np.mean(np.log([0.9, 0.8, 0.7, 0.4]))
    assert scores["val_loss"] == pytest.approx(expected_loss, rel=1e-5)


def test_unknown_parameter_values_are_refused(splits, demo_dataset):
    with pytest.raises(ValueError, match="monitor='val_auc'.*choose one of"):
        train_model(splits.train, splits.val, demo_dataset, TrainParams(**TINY, monitor="val_auc"))


def test_resnet50_preprocessing_layer_matches_keras():
    images = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    expected = keras.applications.resnet50.preprocess_input(images.copy())
    np.testing.assert_allclose(np.asarray(CaffePreprocess()(images)), expected, atol=1e-4)
    assert CAFFE_MEAN_BGR[0] == pytest.approx(103.939)


@pytest.mark.slow
def test_resnet50_backbone_takes_raw_pixels():
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    model, backbone_layers = build_classifier("resnet50", 32, 8)
    assert model.get_layer("preprocess") is not None and len(backbone_layers) > 100
    assert model.predict(images, verbose=0).shape == (2, 8)


def test_weights_from_a_gfile_uri_are_copied_to_a_local_file():
    tf.io.gfile.makedirs("ram://weights")
    with tf.io.gfile.GFile("ram://weights/backbone.h5", "wb") as handle:
        handle.write(b"h5-bytes")
    local = resolve_weights("ram://weights/backbone.h5")
    assert Path(local).read_bytes() == b"h5-bytes" and Path(local).name == "backbone.h5"
    with pytest.raises(FileNotFoundError, match="ram://weights/missing.h5.*tf.io.gfile"):
        resolve_weights("ram://weights/missing.h5")


class _Interrupt(keras.callbacks.Callback):
    """Stands in for a pre-empted node: dies at the end of the given epoch (after the checkpoint is written)."""

    def __init__(self, after_epoch):
        super().__init__()
        self.after_epoch = after_epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.after_epoch:
            raise RuntimeError("node pre-empted")


class _Epochs(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seen = []

    def on_epoch_begin(self, epoch, logs=None):
        self.seen.append(epoch + 1)


@pytest.mark.slow
def test_a_killed_run_resumes_after_its_last_checkpoint(demo_dataset, splits, tmp_path):
    checkpoints = str(tmp_path / "model-checkpoints")
    params = TrainParams(**TINY, epochs=3)
    with pytest.raises(RuntimeError, match="pre-empted"):
        train_model(splits.train, splits.val, demo_dataset, params, out_dir=tmp_path, checkpoint_dir=checkpoints,
                    quiet=True, extra_callbacks=[_Interrupt(2)])
    with tf.io.gfile.GFile(f"{checkpoints}/full/state.json") as handle:
        assert json.loads(handle.read())["epoch"] == 2
    with tf.io.gfile.GFile(f"{checkpoints}/full.history.json") as handle:
        assert [row["epoch"] for row in json.loads(handle.read())] == [1, 2]
    epochs = _Epochs()
    _, report = train_model(splits.train, splits.val, demo_dataset, params, out_dir=tmp_path,
                            checkpoint_dir=checkpoints, quiet=True, extra_callbacks=[epochs])
    assert epochs.seen == [3]  # epochs 1-2 came from the checkpoint
    history = report["history"]["full"]
    assert report["epochs_run"] == 3 and len(history["val_balanced_accuracy"]) == 3
    assert report["resumed_at"] == {"full": 3}
    assert not tf.io.gfile.exists(f"{checkpoints}/full")  # the state is removed once the phase's weights are saved
    again = _Epochs()  # a retry after the phase finished only reloads the phase's final weights
    train_model(splits.train, splits.val, demo_dataset, params, out_dir=tmp_path, checkpoint_dir=checkpoints,
                quiet=True, extra_callbacks=[again])
    assert again.seen == []


def test_op_determinism_holds_during_a_deterministic_run_only(demo_dataset, splits, tmp_path):
    from tensorflow.python.framework.config import is_op_determinism_enabled

    seen: list[bool] = []
    probe = keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs=None: seen.append(
        is_op_determinism_enabled()))
    for deterministic in (True, False):
        train_model(splits.train.head(32), splits.val.head(16), demo_dataset,
                    TrainParams(**{**TINY, "image_size": 16}, epochs=1, deterministic=deterministic), quiet=True,
                    checkpoint_dir=str(tmp_path / str(deterministic)), extra_callbacks=[probe])
        assert not is_op_determinism_enabled(), "a training process that goes on to serve keeps TF's fast kernels"
    with pytest.raises(RuntimeError, match="pre-empted"):  # a run that fails gives the kernels back too
        train_model(splits.train.head(32), splits.val.head(16), demo_dataset,
                    TrainParams(**{**TINY, "image_size": 16}, epochs=2, deterministic=True), quiet=True,
                    checkpoint_dir=str(tmp_path / "failed"), extra_callbacks=[probe, _Interrupt(1)])
    assert seen == [True, False, True] and not is_op_determinism_enabled()


def test_history_files_are_replaced_whole_through_gfile():
    from dermpipe.model.training.callbacks import _read_json, _write_text

    _write_text("ram://history/run/full.history.json", json.dumps([{"epoch": 1, "loss": 2.0}] * 3))
    _write_text("ram://history/run/full.history.json", json.dumps([{"epoch": 1}]))
    assert _read_json("ram://history/run/full.history.json") == [{"epoch": 1}]
    assert not tf.io.gfile.exists("ram://history/run/full.history.json.partial")


def test_checkpoints_sit_beside_a_remote_artifact_and_inside_a_local_one():
    assert checkpoint_location("/gcs/b/root/run/train/model", "gs://b/root/run/train/model") == (
        "gs://b/root/run/train/model-checkpoints")
    assert checkpoint_location("/tmp/art/model", "/tmp/art/model") == "/tmp/art/model/checkpoints"


@pytest.mark.slow
def test_stage_writes_keras_savedmodel_curves_and_tensorboard(demo_dataset, splits, tmp_path, capsys):
    for name, table in (("train", splits.train), ("val", splits.val)):
        table.to_parquet(tmp_path / f"{name}.parquet")
    model = Model(uri=str(tmp_path / "model"))
    stats, curves = Metrics(uri=str(tmp_path / "stats")), HTML(uri=str(tmp_path / "curves.html"))
    params = TrainParams(**TINY, epochs=2, class_balance="oversample", loss="focal", lr_schedule="cosine",
                         monitor="val_loss")
    run(Dataset(uri=str(demo_dataset)), Dataset(uri=str(tmp_path / "train.parquet")),
        Dataset(uri=str(tmp_path / "val.parquet")), model, stats, curves, params)
    out = Path(model.path)
    assert (out / "model.keras").exists() and (out / "saved_model.pb").exists()
    assert check_serving_model(out, 8)["probe_images"] == 2
    assert list((out / "tensorboard/full/train").glob("events.out.tfevents.*"))
    assert not (out / "checkpoints").exists()
    report = json.loads((out / "training.json").read_text())
    assert report["epochs_run"] == 2 and report["class_weights"] is None and report["runtime"]["gpus"] == 0
    page = Path(curves.path).read_text()
    assert "data:image/png;base64" in page and "val_balanced_accuracy" in page
    assert stats.metadata["curve_val_balanced_accuracy_epoch_002"] == pytest.approx(
        report["history"]["full"]["val_balanced_accuracy"][1])
    assert model.metadata["serving_signatures"] == ["serving_default", "serve_pixels"]
    printed = capsys.readouterr().out
    assert "[train full] epoch 1/2" in printed and "val_balanced_accuracy" in printed and "img/s" in printed


def test_curve_metrics_number_epochs_across_phases():
    history = {"head": {"loss": [1.0, 0.5], "val_loss": [1.1, 0.9]}, "fine_tune": {"loss": [0.4], "val_loss": [0.8]}}
    values = curve_metrics(history)
    assert values["curve_loss_epoch_003"] == 0.4 and values["curve_val_loss_epoch_002"] == 0.9
    assert len(values) == 6


@pytest.mark.slow
def test_xla_training_runs_through_the_whole_loop(demo_dataset, splits):
    model, report = train_model(splits.train, splits.val, demo_dataset,
                                TrainParams(**{**TINY, "image_size": 16}, epochs=1, jit_compile=True), quiet=True)
    assert model.get_layer("augmentation").xla and report["runtime"]["jit_compile"] is True
    assert report["epochs_run"] == 1 and np.isfinite(report["history"]["full"]["loss"][0])
