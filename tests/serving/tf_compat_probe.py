"""Run by an OLDER TensorFlow (the Vertex prebuilt serving container's version, in .venv-tf-compat): load a dermpipe
SavedModel and call both signatures the way TF Serving does. Prints JSON. Not a test module (no test_ prefix); it
must not import dermpipe, which needs TensorFlow 2.21.

    python tf_compat_probe.py SAVED_MODEL_DIR IMAGE [IMAGE ...]
"""

import json
import sys

import numpy as np
import tensorflow as tf


def main() -> None:
    folder, images = sys.argv[1], sys.argv[2:]
    loaded = tf.saved_model.load(folder)
    encoded = tf.constant([open(path, "rb").read() for path in images])
    pixels_fn = loaded.signatures["serve_pixels"]
    extra = {}
    if "age_approx" in pixels_fn.structured_input_signature[1]:  # a metadata-fusion model: the first image has none
        n = len(images)
        extra = {"age_approx": tf.constant([np.nan] + [55.0] * (n - 1), tf.float32),
                 "sex": tf.constant([""] + ["female"] * (n - 1)),
                 "anatom_site_general": tf.constant([""] + ["head/neck"] * (n - 1))}
    by_bytes = loaded.signatures["serving_default"](image_bytes=encoded, **extra)
    size = int(pixels_fn.structured_input_signature[1]["image"].shape[1])
    pixels = np.random.default_rng(0).uniform(0, 255, (len(images), size, size, 3)).astype(np.float32)
    by_pixels = pixels_fn(image=tf.constant(pixels), **extra)
    print(json.dumps({
        "tf_version": tf.__version__,
        "signatures": sorted(loaded.signatures),
        "serving_default": {k: v.numpy().tolist() for k, v in by_bytes.items()},
        "serve_pixels": {k: v.numpy().tolist() for k, v in by_pixels.items()},
    }))


if __name__ == "__main__":
    main()
