"""drift_features.decode_images on real ISIC JPEGs with broken files mixed in: one decode gives the statistics and
the model's outputs, the broken files are listed by path and every row stays aligned with its image."""

import shutil

import numpy as np
import pandas as pd
import pytest

SIZE = 32


@pytest.fixture(scope="module")
def mixed_folder(isic_sample, tmp_path_factory):
    """12 real JPEGs with a truncated JPEG at position 3 and a text file named .jpg at position 8."""
    real = sorted((isic_sample / "ISIC_2019_Training_Input").rglob("*.jpg"))[:10]
    folder = tmp_path_factory.mktemp("mixed")
    paths = [folder / f"{i:02d}_{p.name}" for i, p in enumerate(real)]
    for src, dst in zip(real, paths, strict=True):
        shutil.copy(src, dst)
    truncated, text = folder / "03_truncated.jpg", folder / "08_text.jpg"
    truncated.write_bytes(real[0].read_bytes()[:900])
    text.write_bytes(b"this is not an image")
    paths.insert(3, truncated)
    paths.insert(8, text)
    return paths


@pytest.fixture(scope="module")
def model():
    import keras

    from dermpipe.model.zoo import build_classifier

    keras.utils.set_random_seed(0)
    return build_classifier("simple_cnn", SIZE, 8, seed=0)[0]


@pytest.fixture(scope="module")
def fusion_model():
    import keras

    from dermpipe.model.zoo import build_classifier

    keras.utils.set_random_seed(0)
    return build_classifier("simple_cnn", SIZE, 8, seed=0, metadata_fusion=True)[0]


def test_broken_files_are_listed_by_path_and_the_rest_stay_aligned(mixed_folder, model):
    from dermpipe.data.image_stats import STAT_COLUMNS, statistics_from_bytes
    from dermpipe.model.profile.features import decode_images

    out = decode_images(mixed_folder, SIZE, model, batch_size=4)  # batches straddle the broken files
    assert [path for path, _ in out.failed] == [str(mixed_folder[3]), str(mixed_folder[8])]
    assert all(error for _, error in out.failed)
    good = [i for i in range(len(mixed_folder)) if i not in (3, 8)]
    assert list(out.stats.index) == good
    expected = pd.DataFrame([statistics_from_bytes(mixed_folder[i].read_bytes(), SIZE) for i in good], index=good)
    np.testing.assert_allclose(out.stats[list(STAT_COLUMNS)].to_numpy(), expected[list(STAT_COLUMNS)].to_numpy(),
                               rtol=1e-5, atol=1e-6)
    reference = _predict_one_by_one(model, [mixed_folder[i] for i in good])
    np.testing.assert_allclose(out.probabilities, reference, atol=1e-5)
    assert out.embeddings.shape == (len(good), model.get_layer("pool").output.shape[-1])


def test_statistics_only_and_the_strict_model_outputs(mixed_folder, model):
    from dermpipe.model.profile.features import decode_images, model_outputs

    stats_only = decode_images(mixed_folder, SIZE)
    assert stats_only.probabilities is None and stats_only.embeddings is None and len(stats_only.stats) == 10
    with pytest.raises(ValueError, match=r"2 of 12 images could not be read or decoded \(first: .*03_truncated\.jpg"):
        model_outputs(model, mixed_folder)


def test_image_features_keep_metadata_on_the_right_rows(mixed_folder, model):
    from dermpipe.model.profile.features import image_features, image_key

    sites = ["head/neck", "torso", "palms/soles", "lower extremity"]
    metadata = pd.DataFrame({"image": [image_key(str(p)) for p in mixed_folder],
                             "anatom_site_general": [sites[i % 4] for i in range(len(mixed_folder))]})
    table, failed = image_features(mixed_folder, metadata, image_size=SIZE, model=model)
    assert len(failed) == 2 and len(table) == 10
    good = [i for i in range(len(mixed_folder)) if i not in (3, 8)]
    assert table["anatom_site_general"].tolist() == [sites[i % 4] for i in good]
    assert table["image"].tolist() == [image_key(str(mixed_folder[i])) for i in good]


def test_a_fusion_model_gets_each_images_own_metadata_past_the_broken_files(mixed_folder, fusion_model):
    from dermpipe.model.profile.features import decode_images

    n = len(mixed_folder)
    metadata = pd.DataFrame({"age_approx": [5.0 * i for i in range(n)],
                             "sex": ["male" if i % 2 else "female" for i in range(n)],
                             "anatom_site_general": ["torso" if i % 3 else "head/neck" for i in range(n)]})
    out = decode_images(mixed_folder, SIZE, fusion_model, metadata, batch_size=4)
    good = [i for i in range(n) if i not in (3, 8)]
    reference = _predict_one_by_one(fusion_model, [mixed_folder[i] for i in good], metadata.iloc[good])
    np.testing.assert_allclose(out.probabilities, reference, atol=1e-5)
    shifted = _predict_one_by_one(fusion_model, [mixed_folder[i] for i in good], metadata.iloc[good[1:] + good[:1]])
    assert np.abs(out.probabilities - shifted).max() > 1e-4  # the metadata does move the output


def _predict_one_by_one(model, paths, metadata=None):
    """The model on each image alone, decoded by the training input's function: an independent path."""
    import tensorflow as tf

    from dermpipe.data.images import decode_resize
    from dermpipe.model.metadata_inputs import raw_columns

    raw = None if metadata is None else raw_columns(metadata)
    rows = []
    for i, path in enumerate(paths):
        image = decode_resize(tf.constant(str(path)), SIZE)[None]
        inputs = image if raw is None else {"image": image, **{k: tf.constant(v[i:i + 1]) for k, v in raw.items()}}
        rows.append(np.asarray(model(inputs, training=False)))
    return np.concatenate(rows)


def test_to_uint8_rounds_half_up_and_keeps_the_range():
    import numpy as np
    import tensorflow as tf

    from dermpipe.data.images import to_uint8

    out = to_uint8(tf.constant([0.0, 0.49, 0.5, 127.5, 254.6, 255.0])).numpy()
    assert out.dtype == np.uint8
    assert out.tolist() == [0, 0, 1, 128, 255, 255]
