"""SavedModel export with serving signatures that TF Serving, Vertex AI's prebuilt TF containers and dermpipe serve
call directly.

Signatures (both return {"probabilities": float32 [N, 8], "embedding": float32 [N, D]}):
    serving_default  image_bytes: string [N]  encoded JPEG/PNG (TF Serving REST: {"instances": [{"b64": ...}]})
    serve_pixels     image: float32 [N, S, S, 3]  raw RGB in [0, 255] at the model's resolution

A metadata-fusion model (dermpipe.model.metadata_inputs) takes three more inputs in both signatures, one value per
image:
    age_approx  float32 [N]  years; NaN or -1 when unknown
    sex, anatom_site_general  string [N]  ISIC 2019 vocabulary; "" when unknown
The model encodes them itself, so the signature passes the raw values through.

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

    from dermpipe.data.images import decode_resize_bytes

    return tf.map_fn(lambda data: decode_resize_bytes(data, image_size), image_bytes,
                     fn_output_signature=tf.TensorSpec((image_size, image_size, 3), tf.float32))


def export_serving_model(model, out_dir: Path | str) -> dict[str, object]:
    """Write `model` (a dermpipe classifier) as a SavedModel with the two signatures; returns a description."""
    import keras
    import tensorflow as tf

    from dermpipe.model.metadata_inputs import image_size as model_image_size
    from dermpipe.model.metadata_inputs import takes_metadata

    image_size = model_image_size(model)
    fusion = takes_metadata(model)
    heads = keras.Model(model.input if fusion else model.inputs,  # fusion: the dict of named inputs
                        [model.output, model.get_layer(EMBEDDING_LAYER).output], name="serving_heads")

    def outputs(pixels):
        probabilities, embedding = heads(pixels, training=False)
        return {"probabilities": tf.cast(probabilities, tf.float32), "embedding": tf.cast(embedding, tf.float32)}

    archive = keras.export.ExportArchive()
    archive.track(heads)
    if fusion:
        return _export_fusion(archive, outputs, model, heads, out_dir, image_size)
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


METADATA_SPECS = (("age_approx", "float32"), ("sex", "string"), ("anatom_site_general", "string"))


def _export_fusion(archive, outputs, model, heads, out_dir, image_size: int) -> dict[str, object]:
    """Both signatures of a fusion model: the image (bytes or pixels) plus the raw metadata, one value per image."""
    import tensorflow as tf

    meta_specs = [tf.TensorSpec([None], getattr(tf, dtype), name=name) for name, dtype in METADATA_SPECS]

    def with_metadata(image, age_approx, sex, anatom_site_general):
        return outputs({"image": image, "age_approx": age_approx, "sex": sex,
                        "anatom_site_general": anatom_site_general})

    archive.add_endpoint(
        name=BYTES_SIGNATURE,
        fn=lambda image_bytes, age_approx, sex, anatom_site_general: with_metadata(
            decode_batch(image_bytes, image_size), age_approx, sex, anatom_site_general),
        input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes"), *meta_specs],
    )
    archive.add_endpoint(
        name=PIXELS_SIGNATURE,
        fn=with_metadata,
        input_signature=[tf.TensorSpec([None, image_size, image_size, 3], tf.float32, name="image"), *meta_specs],
    )
    archive.write_out(str(out_dir), verbose=False)
    metadata = ", age_approx: float32 [N] (NaN/-1 unknown), sex: string [N], anatom_site_general: string [N]"
    return {
        "signatures": {BYTES_SIGNATURE: "image_bytes: string [N]" + metadata,
                       PIXELS_SIGNATURE: f"image: float32 [N,{image_size},{image_size},3]" + metadata},
        "outputs": {"probabilities": int(model.output_shape[-1]), "embedding": int(heads.outputs[1].shape[-1])},
        "image_size": image_size,
        "metadata_inputs": [name for name, _ in METADATA_SPECS],
    }


def signature_takes_metadata(signature) -> bool:
    """Whether a loaded SavedModel signature takes the metadata inputs (a fusion model's)."""
    return {name for name, _ in METADATA_SPECS} <= set(signature.structured_input_signature[1])


def metadata_tensors(metas: list[dict | None]) -> dict[str, object]:
    """The signature's metadata arguments for a batch: age_approx float32 (NaN when unknown), sex and
    anatom_site_general strings ("" when unknown); a None entry is an image sent without metadata."""
    import tensorflow as tf

    rows = [meta or {} for meta in metas]
    ages = [np.nan if row.get("age_approx") is None else float(row["age_approx"]) for row in rows]
    return {"age_approx": tf.constant(ages, tf.float32),
            **{key: tf.constant([row.get(key) or "" for row in rows], tf.string)
               for key in ("sex", "anatom_site_general")}}


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
    """Load the SavedModel and send real encoded JPEGs through serving_default (for a fusion model one with
    metadata, one with every value unknown); raise if the answer is wrong."""
    import tensorflow as tf

    from dermpipe import config
    loaded = tf.saved_model.load(str(saved_model_dir))
    serve = loaded.signatures[BYTES_SIGNATURE]
    fusion = signature_takes_metadata(serve)
    extra = metadata_tensors([{"age_approx": 55.0, "sex": config.SEXES[0], "anatom_site_general": config.SITES[0]},
                              None]) if fusion else {}
    answer = serve(image_bytes=tf.constant([probe_jpeg(), probe_jpeg(96)]), **extra)
    probabilities = answer["probabilities"].numpy()
    if probabilities.shape != (2, n_classes) or not np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-3):
        raise RuntimeError(
            f"{saved_model_dir}: serving_default answered probabilities of shape {probabilities.shape} summing to "
            f"{probabilities.sum(axis=1)}; expected (2, {n_classes}) rows summing to 1"
        )
    return {"signature": BYTES_SIGNATURE, "probe_images": 2, "embedding_dim": int(answer["embedding"].shape[-1]),
            "probe_output_sum": float(probabilities.sum(axis=1).mean()), **({"metadata": True} if fusion else {})}
