"""`dermpipe serve` takes a cross-validated ensemble unchanged: :predict answers the ensemble's SavedModel, :explain
answers Grad-CAM of the ensemble (every member's feature map), both over plain HTTP."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from conftest import MODEL, PCA_K, assert_answers_like_the_saved_model, start_server, stop_server

pytestmark = pytest.mark.slow  # starts its own server


def _member(seed: int):
    from dermpipe.model.zoo import build_classifier

    model, _ = build_classifier("simple_cnn", 32, 8, seed=seed)
    head = model.get_layer("probabilities")
    kernel, bias = head.get_weights()
    head.set_weights([np.random.default_rng(seed).normal(0, 0.5, kernel.shape).astype("float32"), bias])
    return model


@pytest.fixture(scope="module")
def ensemble_server(tmp_path_factory):
    from dermpipe.deploy import registry
    from dermpipe.model.ensemble import build_ensemble
    from dermpipe.model.export import export_serving_model

    root = tmp_path_factory.mktemp("ensemble-registry")
    folder = root / MODEL / "1"
    ensemble = build_ensemble([_member(1), _member(2)], weights=[2.0, 1.0])
    export_serving_model(ensemble, folder)
    ensemble.save(folder / "model.keras")
    rng = np.random.default_rng(0)
    np.savez(folder / "embedding_pca.npz", mean=rng.normal(size=256).astype(np.float32),
             components=rng.normal(size=(PCA_K, 256)).astype(np.float32))
    registry.set_current(str(root), MODEL, 1)
    work = tmp_path_factory.mktemp("ensemble-serve")
    server = start_server(root, work / "predictions", work / "server.log", "--poll-seconds", "0.3")
    yield server
    stop_server(server)


def test_predict_and_explain_answer_for_the_whole_ensemble(ensemble_server, jpegs):
    import tensorflow as tf

    from dermpipe.model.evaluation.ensemble_cam import ensemble_cam_maps
    from dermpipe.model.export import decode_batch
    from dermpipe.model.zoo import load_classifier

    instances = {"instances": [{"b64": base64.b64encode(j).decode()} for j in jpegs[:2]]}
    predicted = ensemble_server.post(f"/v1/models/{MODEL}:predict", json=instances)
    assert predicted.status_code == 200, predicted.text
    expected = assert_answers_like_the_saved_model(ensemble_server.registry_root, 1, jpegs[:2],
                                                   predicted.json()["predictions"])
    explained = ensemble_server.post(f"/v1/models/{MODEL}:explain", json=instances)
    assert explained.status_code == 200, explained.text
    model = load_classifier(ensemble_server.registry_root / MODEL / "1" / "model.keras", compile=False)
    pixels = decode_batch(tf.constant(jpegs[:2]), 32).numpy()
    local = ensemble_cam_maps(model, pixels, [int(i) for i in expected.argmax(1)], at_input_resolution=False)
    for explanation, mine in zip(explained.json()["explanations"], local, strict=True):
        cam = explanation["gradcam"]
        assert cam["layer"].startswith("member_0/") and "member_1/" in cam["layer"]
        np.testing.assert_allclose(np.array(cam["map"]), mine, atol=1e-4)
