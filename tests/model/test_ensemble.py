"""The ensemble is one model with a single model's contract: averaged probabilities, "pool", model.keras, SavedModel."""

import os
import subprocess
import sys

import numpy as np
import pytest

from dermpipe.model.ensemble import build_ensemble, check_combination, is_ensemble, member_layers
from dermpipe.model.zoo import build_classifier, load_classifier


def _member(seed: int, size: int = 32, **kwargs):
    model, _ = build_classifier("simple_cnn", size, 8, seed=seed, **kwargs)
    # untrained softmax heads answer near-uniform; random head weights make the members disagree visibly
    head = model.get_layer("probabilities")
    kernel, bias = head.get_weights()
    rng = np.random.default_rng(seed)
    head.set_weights([rng.normal(0, 0.5, kernel.shape).astype("float32"), bias])
    return model


def _pixels(n: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype("float32")


@pytest.fixture(scope="module")
def members():
    return [_member(1), _member(2), _member(3)]


def test_uniform_ensemble_is_the_mean_of_its_members(members):
    ensemble = build_ensemble(members)
    x = _pixels(4, 32)
    expected = np.mean([m.predict(x, verbose=0) for m in members], axis=0)
    np.testing.assert_allclose(ensemble.predict(x, verbose=0), expected, atol=1e-6)
    assert is_ensemble(ensemble) and not is_ensemble(members[0])
    assert [layer.name for layer in member_layers(ensemble)] == ["member_0", "member_1", "member_2"]
    assert ensemble.get_layer("pool").output.shape[-1] == 3 * 128  # the members' embeddings, concatenated


def test_weights_and_temperatures_scale_each_member(members):
    ensemble = build_ensemble(members[:2], weights=[3.0, 1.0], temperatures=[2.0, 0.5])
    x = _pixels(3, 32, seed=5)
    p0, p1 = (m.predict(x, verbose=0).astype("float64") for m in members[:2])

    def scaled(p, t):
        z = np.exp(np.log(p) / t)
        return z / z.sum(axis=1, keepdims=True)

    expected = 0.75 * scaled(p0, 2.0) + 0.25 * scaled(p1, 0.5)
    got = ensemble.predict(x, verbose=0)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)


def test_model_keras_round_trip_keeps_the_answers(members, tmp_path):
    ensemble = build_ensemble(members, weights=[1, 2, 1], temperatures=[1.0, 1.5, 0.8])
    ensemble.save(tmp_path / "model.keras")
    loaded = load_classifier(tmp_path / "model.keras")
    x = _pixels(2, 32, seed=9)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), ensemble.predict(x, verbose=0), atol=1e-6)
    assert is_ensemble(loaded) and len(member_layers(loaded)) == 3
    # a fresh process (a pipeline task) loads it through load_classifier alone, with no ensemble import of its own
    code = ("import sys; from dermpipe.model.zoo import load_classifier; "
            "print(load_classifier(sys.argv[1]).output_shape)")
    done = subprocess.run([sys.executable, "-P", "-c", code, str(tmp_path / "model.keras")], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.stdout.strip().endswith("(None, 8)"), done.stderr[-2000:]


def test_saved_model_answers_like_the_averaged_members_on_real_images(members, isic_sample, tmp_path):
    import tensorflow as tf

    from dermpipe.model.export import check_serving_model, export_serving_model

    files = sorted((isic_sample / "ISIC_2019_Training_Input").rglob("*.jpg"))[:4]
    assert len(files) == 4, f"expected ISIC JPEGs under {isic_sample}"
    jpegs = tf.constant([f.read_bytes() for f in files])
    answers = []
    for index, member in enumerate(members):
        export_serving_model(member, tmp_path / f"m{index}")
        answers.append(tf.saved_model.load(str(tmp_path / f"m{index}")).signatures["serving_default"](
            image_bytes=jpegs))
    description = export_serving_model(build_ensemble(members), tmp_path / "ensemble")
    served = tf.saved_model.load(str(tmp_path / "ensemble")).signatures["serving_default"](image_bytes=jpegs)
    expected = np.mean([a["probabilities"].numpy() for a in answers], axis=0)
    np.testing.assert_allclose(served["probabilities"].numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(served["embedding"].numpy(),
                               np.concatenate([a["embedding"].numpy() for a in answers], axis=1), atol=1e-4)
    assert description["outputs"] == {"probabilities": 8, "embedding": 384}
    assert description["signatures"]["serve_pixels"] == "image: float32 [N,32,32,3]"
    assert check_serving_model(tmp_path / "ensemble", 8)["embedding_dim"] == 384


def test_members_of_another_size_are_resized_inside_the_graph():
    import tensorflow as tf

    small, large = _member(1, 32), _member(2, 48)
    ensemble = build_ensemble([small, large])
    x = _pixels(2, 32, seed=3)
    resized = tf.image.resize(x, (48, 48), method="bilinear").numpy()
    expected = (small.predict(x, verbose=0) + large.predict(resized, verbose=0)) / 2
    np.testing.assert_allclose(ensemble.predict(x, verbose=0), expected, atol=1e-5)
    assert ensemble.inputs[0].shape[1:] == (32, 32, 3)


def test_a_fusion_member_makes_the_ensemble_take_metadata(tmp_path):
    import tensorflow as tf

    from dermpipe.model.export import check_serving_model, export_serving_model
    from dermpipe.model.metadata_inputs import raw_values, takes_metadata

    image_only, fusion = _member(1), _member(2, metadata_fusion=True)
    ensemble = build_ensemble([image_only, fusion])
    assert takes_metadata(ensemble)
    x = _pixels(2, 32, seed=4)
    inputs = {"image": x, **raw_values([40, None], ["male", ""], ["torso", "palms/soles"])}
    inputs = {key: tf.constant(value) for key, value in inputs.items()}
    got = ensemble(inputs, training=False).numpy()
    expected = (image_only(inputs["image"], training=False).numpy() + fusion(inputs, training=False).numpy()) / 2
    np.testing.assert_allclose(got, expected, atol=1e-5)
    export_serving_model(ensemble, tmp_path / "saved")
    assert check_serving_model(tmp_path / "saved", 8)["metadata"] is True


@pytest.mark.parametrize(("weights", "temperatures", "message"), [
    ([1.0], [1.0, 1.0], "1 member_weights and 2 temperatures"),
    ([1.0, -1.0], [1.0, 1.0], "non-negative weights"),
    ([0.0, 0.0], [1.0, 1.0], "positive sum"),
    ([1.0, 1.0], [1.0, 0.0], "positive temperatures"),
])
def test_bad_combinations_name_the_field(weights, temperatures, message):
    with pytest.raises(ValueError, match=message):
        check_combination(weights, temperatures)


def test_members_must_answer_the_same_classes():
    other, _ = build_classifier("simple_cnn", 32, 5, seed=1)
    with pytest.raises(ValueError, match=r"\[5, 8\] classes"):
        build_ensemble([_member(1), other])
    with pytest.raises(ValueError, match="at least one member"):
        build_ensemble([])
