import keras
import numpy as np
import pandas as pd
import pytest

from dermpipe.data.merge import merge_dataset
from dermpipe.data.split import split_table
from dermpipe.model.training.loop import class_weights, set_trainable, train_model
from dermpipe.model.training.train import TrainParams
from dermpipe.model.zoo import build_classifier, resolve_weights


def test_class_weights_balance_and_cover_absent_classes():
    labels = np.array([1] * 8 + [0] * 2)
    weights = class_weights(labels, 8)
    assert weights[0] == pytest.approx(2.5) and weights[1] == pytest.approx(0.625)
    assert weights[5] == 1.0 and len(weights) == 8
    roots = class_weights(labels, 8, power=0.5)  # sqrt_weights: 2.5 ** 0.5, 0.625 ** 0.5
    assert roots[0] == pytest.approx(1.5811, abs=1e-4) and roots[1] == pytest.approx(0.7906, abs=1e-4)
    assert roots[5] == 1.0


def test_resolve_weights():
    assert resolve_weights("none") is None
    assert resolve_weights("imagenet") == "imagenet"
    with pytest.raises(FileNotFoundError, match="weights file '/no/such.h5' not found"):
        resolve_weights("/no/such.h5")


def test_unknown_backbone_lists_choices():
    with pytest.raises(ValueError, match="choose one of"):
        build_classifier("vgg99", 32, 8)


@pytest.mark.parametrize("backbone", ["simple_cnn", "small_resnet", "mobilenet_v3_small"])
def test_classifier_takes_raw_pixels_and_outputs_probabilities(backbone):
    model, backbone_layers = build_classifier(backbone, 64, 8)
    images = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    probs = model.predict(images, verbose=0)
    assert probs.shape == (2, 8)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert model.get_layer("augmentation") is not None
    if backbone.startswith("mobilenet"):
        assert len(backbone_layers) > 50
        assert all(model.get_layer(layer.name) is layer for layer in backbone_layers[-5:])  # flat, not nested


def test_small_resnet_is_a_residual_net_with_a_16x_smaller_feature_map(tmp_path):
    """Four residual stages (32..256 channels) after a strided stem; Grad-CAM and the ensemble find its last feature
    map (a 4x4x256 map at 64 px), and the saved model reloads to the same predictions."""
    from dermpipe.model.backbones import last_feature_map_layer
    from dermpipe.model.zoo import load_classifier

    model, _ = build_classifier("small_resnet", 64, 8, seed=0)
    adds = [layer for layer in model.layers if isinstance(layer, keras.layers.Add)]
    assert [layer.output.shape[1:] for layer in adds] == [(32, 32, 32), (16, 16, 64), (8, 8, 128), (4, 4, 256)]
    assert last_feature_map_layer(model).name == "stage3_out"
    assert 1_000_000 < model.count_params() < 1_500_000  # sized for a 2-core CPU, 20x smaller than ResNet-50
    images = np.random.default_rng(2).uniform(0, 255, (3, 64, 64, 3)).astype("float32")
    model.save(tmp_path / "model.keras")
    np.testing.assert_allclose(load_classifier(tmp_path / "model.keras").predict(images, verbose=0),
                               model.predict(images, verbose=0), atol=1e-6)


def test_augmentation_only_in_training():
    model, _ = build_classifier("simple_cnn", 32, 8, seed=3)
    aug = model.get_layer("augmentation")
    image = np.random.default_rng(1).uniform(0, 255, (1, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(aug(image, training=False), image)
    assert not np.allclose(aug(image, training=True), image)


def test_fine_tuning_thaws_only_top_layers_and_keeps_batchnorm_frozen():
    _, layers = build_classifier("mobilenet_v3_small", 64, 8)
    set_trainable(layers, top_n=0)
    assert not any(layer.trainable for layer in layers)
    thawed = set_trainable(layers, top_n=10)
    assert 0 < thawed <= 10
    assert all(not layer.trainable for layer in layers[:-10])
    assert not any(layer.trainable for layer in layers if isinstance(layer, keras.layers.BatchNormalization))


@pytest.mark.parametrize("backbone", ["simple_cnn", "small_resnet"])
def test_training_learns_the_demo_signal(demo_dataset, backbone):
    """A few epochs on the demo set beat chance (1/8) by a wide margin on validation images."""
    table = merge_dataset(demo_dataset).table
    splits = split_table(table, test_size=0.1, val_size=0.2, seed=0)
    model, report = train_model(splits.train, splits.val, demo_dataset,
                                TrainParams(backbone=backbone, image_size=32, epochs=8, patience=8, batch_size=16),
                                verbose=0)
    assert report["epochs_run"] == 8
    assert report["history"]["full"]["loss"][-1] < report["history"]["full"]["loss"][0]
    assert report["validation"]["balanced_accuracy"] > 0.4
    assert report["train_rows"] == len(splits.train)
    assert isinstance(model, keras.Model)


def test_empty_split_refused(demo_dataset):
    empty = pd.DataFrame(columns=["path", "label_index"])
    with pytest.raises(ValueError, match="train=0"):
        train_model(empty, empty, demo_dataset, TrainParams(backbone="simple_cnn", image_size=32))


@pytest.mark.filterwarnings("error:Your input ran out of data")  # every epoch must see the whole training split
def test_training_reads_the_prepared_shards(demo_dataset, tmp_path):
    """With the prepare stage's shards, train and validation come from the TFRecords, not the image files."""
    from dermpipe.data.prepare import prepare_shards

    table = merge_dataset(demo_dataset).table
    splits = split_table(table, test_size=0.1, val_size=0.2, seed=0)
    shards = tmp_path / "shards"
    prepare_shards(demo_dataset, {"train": splits.train, "val": splits.val, "test": splits.test}, shards,
                   image_size=32, shard_bytes=50_000)
    # Remove the image files: a run that still read them would fail.
    moved = tmp_path / "moved"
    (demo_dataset / "ISIC_2019_Training_Input").rename(moved)
    try:
        model, report = train_model(splits.train, splits.val, demo_dataset,
                                    TrainParams(backbone="simple_cnn", image_size=32, epochs=8, patience=8,
                                                batch_size=16), verbose=0, shards_dir=shards)
    finally:
        moved.rename(demo_dataset / "ISIC_2019_Training_Input")
    assert report["input"] == "tfrecord-shards" and report["epochs_run"] == 8
    assert report["train_rows"] == len(splits.train) and report["val_rows"] == len(splits.val)
    assert report["class_counts"] == {c: int((splits.train["label_index"] == c).sum()) for c in range(8)}
    assert report["validation"]["balanced_accuracy"] > 0.4
    with pytest.raises(ValueError, match="shards in .* are 32 px but image_size is 48"):
        train_model(splits.train, splits.val, demo_dataset, TrainParams(backbone="simple_cnn", image_size=48),
                    shards_dir=shards)
