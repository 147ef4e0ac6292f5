"""SavedModel export with serving signatures that TF Serving, Vertex AI's prebuilt TF containers and dermpipe serve
call directly.

Signatures (both return {"probabilities": float32 [N, 8], "embedding": float32 [N, D]}):
    serving_default  image_bytes: string [N]  encoded JPEG/PNG (TF Serving REST: {"instances": [{"b64": ...}]})
    serve_pixels     image: float32 [N, S, S, 3]  raw RGB in [0, 255] at the model's resolution

The embedding is the output of the classifier's global pooling layer ("pool"), what the drift monitor profiles.
Decoding and resizing are the training input's (imagedata.decode_resize_bytes: RGB, DCT-scaled JPEG decode, centre
square, bilinear), so a served image is seen exactly as a training image was.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

EMBEDDING_LAYER = "pool"
BYTES_SIGNATURE = "serving_default"
PIXELS_SIGNATURE = "serve_pixels"


def decode_batch(image_bytes, image_size: int):
    """Encoded images string [N] -> float32 pixels [N, S, S, 3]: the serving signature's decode."""
    import tensorflow as tf

    from dermpipe.imagedata import decode_resize_bytes

    return tf.map_fn(lambda data: decode_resize_bytes(data, image_size), image_bytes,
                     fn_output_signature=tf.TensorSpec((image_size, image_size, 3), tf.float32))


def export_serving_model(model, out_dir: Path | str) -> dict[str, object]:
    """Write `model` (a dermpipe classifier) as a SavedModel with the two signatures; returns a description."""
    import keras
    import tensorflow as tf

    image_size = int(model.input_shape[1])
    heads = keras.Model(model.inputs, [model.output, model.get_layer(EMBEDDING_LAYER).output], name="serving_heads")

    def outputs(pixels):
        probabilities, embedding = heads(pixels, training=False)
        return {"probabilities": tf.cast(probabilities, tf.float32), "embedding": tf.cast(embedding, tf.float32)}

    archive = keras.export.ExportArchive()
    archive.track(heads)
    archive.add_endpoint(
        name=BYTES_SIGNATURE,
        fn=lambda image_bytes: outputs(decode_batch(image_bytes, image_size)),
        input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")],
    )
    archive.add_endpoint(
        name=PIXELS_SIGNATURE,
        fn=outputs,
        input_signature=[tf.TensorSpec([None, image_size, image_size, 3], tf.float32, name="image")],
    )
    archive.write_out(str(out_dir), verbose=False)
    return {
        "signatures": {BYTES_SIGNATURE: "image_bytes: string [N]", PIXELS_SIGNATURE: f"image: float32 [N,{image_size},"
                       f"{image_size},3]"},
        "outputs": {"probabilities": int(model.output_shape[-1]), "embedding": int(heads.outputs[1].shape[-1])},
        "image_size": image_size,
    }


def probe_jpeg(size: int = 64) -> bytes:
    """A small valid JPEG (mid-grey with a gradient) to check that an exported model answers."""
    import io

    from PIL import Image

    ramp = np.linspace(60, 200, size, dtype=np.uint8)
    pixels = np.stack([np.tile(ramp, (size, 1))] * 3, axis=-1)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


def check_serving_model(saved_model_dir: Path | str, n_classes: int) -> dict[str, object]:
    """Load the SavedModel and send a real encoded JPEG through serving_default; raise if the answer is wrong."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(saved_model_dir))
    serve = loaded.signatures[BYTES_SIGNATURE]
    answer = serve(image_bytes=tf.constant([probe_jpeg(), probe_jpeg(96)]))
    probabilities = answer["probabilities"].numpy()
    if probabilities.shape != (2, n_classes) or not np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-3):
        raise RuntimeError(
            f"{saved_model_dir}: serving_default answered probabilities of shape {probabilities.shape} summing to "
            f"{probabilities.sum(axis=1)}; expected (2, {n_classes}) rows summing to 1"
        )
    return {"signature": BYTES_SIGNATURE, "probe_images": 2, "embedding_dim": int(answer["embedding"].shape[-1]),
            "probe_output_sum": float(probabilities.sum(axis=1).mean())}
