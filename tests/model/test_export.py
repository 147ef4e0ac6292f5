import io

import numpy as np
import pytest
from PIL import Image

from dermpipe.data.images import decode_resize
from dermpipe.model.export import check_serving_model, export_serving_model
from dermpipe.model.zoo import build_classifier


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model, _ = build_classifier("simple_cnn", 48, 8, seed=1)
    out = tmp_path_factory.mktemp("export") / "saved"
    description = export_serving_model(model, out)
    return model, out, description


def _jpeg(seed: int, size=(120, 90)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def test_bytes_signature_matches_the_keras_model_on_decoded_pixels(exported, tmp_path):
    import tensorflow as tf

    model, out, description = exported
    assert description["outputs"] == {"probabilities": 8, "embedding": 128}
    images = [_jpeg(1), _jpeg(2, (48, 48))]
    files = []
    for i, data in enumerate(images):
        files.append(tmp_path / f"{i}.jpg")
        files[-1].write_bytes(data)
    served = tf.saved_model.load(str(out)).signatures["serving_default"]
    answer = served(image_bytes=tf.constant(images))
    pixels = np.stack([decode_resize(tf.constant(str(f)), 48).numpy() for f in files])
    np.testing.assert_allclose(answer["probabilities"].numpy(), model.predict(pixels, verbose=0), atol=1e-5)
    assert answer["embedding"].shape == (2, 128)


def test_check_serving_model_reports_the_probe(exported):
    _, out, _ = exported
    check = check_serving_model(out, 8)
    assert check["probe_images"] == 2 and check["embedding_dim"] == 128
    with pytest.raises(RuntimeError, match="expected \\(2, 9\\)"):
        check_serving_model(out, 9)


def test_every_stage_sees_the_centre_square():
    """Files, shards and the serving signature all take the centre square before resizing (prepare's policy)."""
    import tensorflow as tf

    from dermpipe.data.images import decode_resize_bytes

    strip = np.zeros((30, 90, 3), np.uint8)
    strip[:, :30] = (255, 0, 0)
    strip[:, 30:60] = (0, 255, 0)
    strip[:, 60:] = (0, 0, 255)
    buffer = io.BytesIO()
    Image.fromarray(strip).save(buffer, format="PNG")
    pixels = decode_resize_bytes(tf.constant(buffer.getvalue()), 10).numpy()
    np.testing.assert_allclose(pixels[..., 1], 255, atol=1)  # only the green middle third
    assert pixels[..., 0].max() < 1 and pixels[..., 2].max() < 1
