"""Grad-CAM and Grad-CAM++ heat maps (tf-keras-vis) for a sample of test images, as PNGs and an HTML gallery: the
library the explain stage (dermpipe.model.evaluation.explain) and the server's :explain route use.

Per class it shows the most confident correct predictions and the most confident errors: what the model looked at
when it was right and when it was wrong. Grad-CAM weighs each feature map by its mean gradient; Grad-CAM++ weighs the
positive gradients per location, which tends to cover several lesion parts better than Grad-CAM's single blob.
"""

import logging
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from dermpipe import config
from dermpipe.model.backbones import is_feature_map, last_feature_map_layer

# method -> (display name, PNG file suffix), in gallery order
CAM_METHODS: dict[str, tuple[str, str]] = {
    "gradcam": ("Grad-CAM", "gradcam"),
    "gradcam++": ("Grad-CAM++", "gradcampp"),
}


def cam_view(model):
    """(model, layer name) for tf-keras-vis: a model in which the last feature map is a top-level layer.

    dermpipe builds its classifiers flat, so this is the model itself. A model whose backbone is a nested
    keras.Model (the usual `base = EfficientNetB0(...); x = base(x)` pattern) is rebuilt as a chain of the same layers
    (weights shared) with the backbone split at its last feature map and an Identity layer "cam_features" there:
    tf-keras-vis can only take gradients at a tensor of the outer graph. The rebuild is checked against the original.
    """
    import keras

    nested = [layer for layer in model.layers if isinstance(layer, keras.Model) and last_feature_map_layer(layer)]
    if not nested:
        layer = last_feature_map_layer(model)
        if layer is None:
            raise ValueError(f"model {model.name}: no convolutional feature map found for a class activation map")
        return model, layer.name
    backbone = nested[-1]
    if any(is_feature_map(layer) for layer in model.layers[model.layers.index(backbone) + 1:]):
        return model, last_feature_map_layer(model).name  # a top-level feature map after the backbone
    inner = last_feature_map_layer(backbone)
    head = keras.Model(backbone.input, inner.output, name=f"{backbone.name}_features")
    tail = None if inner.output is backbone.outputs[0] else keras.Model(inner.output, backbone.outputs[0])
    x = inputs = keras.Input(model.inputs[0].shape[1:], name="cam_input")
    try:
        for layer in model.layers:
            if isinstance(layer, keras.layers.InputLayer):
                continue
            if layer is backbone:
                x = keras.layers.Identity(name="cam_features")(head(x))
                x = tail(x) if tail is not None else x
            else:
                x = layer(x)
        flat = keras.Model(inputs, x, name=f"{model.name}_cam")
        probe = np.random.default_rng(0).uniform(0, 255, (2, *model.inputs[0].shape[1:])).astype(np.float32)
        agree = np.allclose(flat(probe, training=False), model(probe, training=False), atol=1e-4)
    except (ValueError, TypeError) as error:
        raise ValueError(f"model {model.name}: its backbone {backbone.name!r} is nested and the model is not a "
                         f"single chain of layers, so Grad-CAM cannot reach {inner.name!r} ({error})") from error
    if not agree:
        raise ValueError(f"model {model.name}: rebuilding it around the nested backbone {backbone.name!r} changed its "
                         "predictions; Grad-CAM needs a model whose layers form a single chain")
    return flat, "cam_features"


def select_examples(predictions: pd.DataFrame, per_class: int) -> pd.DataFrame:
    """Per true class: the `per_class` most confident correct predictions and the `per_class` most confident errors."""
    predictions = predictions.assign(correct=predictions["label"] == predictions["predicted"])
    picked = (
        predictions.sort_values("confidence", ascending=False)
        .groupby(["label", "correct"], sort=False)
        .head(per_class)
    )
    order = {c: i for i, c in enumerate(config.CLASSES)}
    return picked.sort_values(["label", "correct", "confidence"], key=lambda s: s.map(order) if s.name == "label"
                              else s, ascending=[True, False, False]).reset_index(drop=True)


def cam_maps(model, images: np.ndarray, class_indices: list[int], method: str = "gradcam",
             metadata: Mapping[str, np.ndarray] | None = None, *, at_input_resolution: bool = True) -> np.ndarray:
    """Class activation maps in [0, 1] at input resolution, shape (n, h, w), one per image, for the given class of
    each image; method is "gradcam" (Grad-CAM) or "gradcam++" (Grad-CAM++). at_input_resolution=False: the maps at
    the feature map's own (low) resolution, as computed (what `dermpipe serve`'s :explain returns as numbers).

    A metadata-fusion model is explained with respect to the image, each image's metadata (`metadata`: raw values
    per image, metafeatures.raw_columns; None: all unknown) held fixed: tf-keras-vis takes one seed input per model
    input, and the gradient is taken at the image's last feature map as for an image-only model."""
    if method not in CAM_METHODS:
        raise ValueError(f"unknown CAM method {method!r}; choose one of {list(CAM_METHODS)}")
    from dermpipe.model.ensemble import is_ensemble

    if is_ensemble(model):  # Grad-CAM of the ensemble itself, never of one member
        if method != "gradcam":
            raise ValueError(f"CAM method {method!r} is not defined for an ensemble; use 'gradcam' "
                             "(dermpipe.model.evaluation.ensemble_cam)")
        from dermpipe.model.evaluation.ensemble_cam import ensemble_cam_maps

        return ensemble_cam_maps(model, images, class_indices, metadata, at_input_resolution=at_input_resolution)
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    from tf_keras_vis.utils.scores import CategoricalScore

    if method == "gradcam":
        from tf_keras_vis.gradcam import Gradcam as Cam
    else:
        from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus as Cam

    from dermpipe.model.metadata_inputs import model_inputs, takes_metadata

    view, layer_name = cam_view(model)
    cam = Cam(view, model_modifier=ReplaceToLinear(), clone=True)
    score = CategoricalScore(list(class_indices))
    # flat: tf-keras-vis steps back to the nearest Conv layer, as it always has; rebuilt: exactly there
    seek = view is model
    if not takes_metadata(model):
        maps = cam(score, images, penultimate_layer=layer_name, seek_penultimate_conv_layer=seek, normalize_cam=True,
                   expand_cam=at_input_resolution)
        return np.clip(np.nan_to_num(np.asarray(maps, dtype=np.float32)), 0.0, 1.0)
    inputs = model_inputs(model, images, metadata)
    seeds = [inputs[tensor.name.split(":")[0]] for tensor in model.inputs]  # tf-keras-vis: a list, in input order
    # expand_cam would resize the map to every input's shape, the metadata vectors' too: resize to the image here
    with _quiet_string_watch():
        small = cam(score, seeds, penultimate_layer=layer_name, seek_penultimate_conv_layer=seek,
                    normalize_cam=True, expand_cam=False)
    small = np.asarray(small, dtype=np.float32)
    maps = resize_maps(small, images.shape[1:3]) if at_input_resolution else small
    return np.clip(np.nan_to_num(maps), 0.0, 1.0)


@contextmanager
def _quiet_string_watch():
    """tf-keras-vis watches every seed input; for the metadata strings TensorFlow warns that the tape cannot
    differentiate them, which is right and harmless (the gradient is taken at the image's feature map)."""
    import tensorflow as tf

    def keep(record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("The dtype of the watched tensor must be floating")

    logger = tf.get_logger()
    logger.addFilter(keep)
    try:
        yield
    finally:
        logger.removeFilter(keep)


def resize_maps(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(n, h, w) maps -> (n, *size), bilinear (tf-keras-vis' expand_cam interpolates linearly too)."""
    import tensorflow as tf

    return tf.image.resize(maps[..., None], size, method="bilinear").numpy()[..., 0]


def gradcam_maps(model, images: np.ndarray, class_indices: list[int]) -> np.ndarray:
    """Grad-CAM maps in [0, 1] at input resolution, one per image, for the given class of each image."""
    return cam_maps(model, images, class_indices, "gradcam")


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.4) -> np.ndarray:
    """Blend a jet-coloured heat map over the image; both at the same resolution; uint8 RGB out."""
    from matplotlib import colormaps

    colour = colormaps["jet"](np.clip(heatmap, 0, 1))[..., :3] * 255
    return np.clip(image * (1 - alpha) + colour * alpha, 0, 255).astype(np.uint8)


def write_gallery(examples: pd.DataFrame, images: np.ndarray, maps: Mapping[str, np.ndarray] | np.ndarray,
                  out_dir: Path) -> str:
    """PNGs per example under out_dir (`<image>_original.png` and one overlay per method, `<image>_gradcam.png`,
    `<image>_gradcampp.png`) and the gallery HTML, which is returned. maps: method -> (n, h, w) maps in [0, 1]
    (a bare array counts as Grad-CAM)."""
    from dermpipe.data.image_privacy import encode_png
    from dermpipe.reports import img_tag, page

    if not isinstance(maps, Mapping):
        maps = {"gradcam": maps}
    unknown = set(maps) - set(CAM_METHODS)
    if unknown:
        raise ValueError(f"unknown CAM method(s) {sorted(unknown)}; choose from {list(CAM_METHODS)}")
    methods = [m for m in CAM_METHODS if m in maps]
    if not methods:
        raise ValueError(f"no CAM maps given; expected some of {list(CAM_METHODS)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    sections = []
    for cls in config.CLASSES:
        rows = examples[examples["label"] == cls]
        if rows.empty:
            continue
        figures = []
        for idx, row in rows.iterrows():
            parts = [("original", "original", images[idx].astype(np.uint8))]
            parts += [(CAM_METHODS[m][1], CAM_METHODS[m][0], overlay(images[idx], maps[m][idx])) for m in methods]
            tags = []
            for suffix, title, pixels in parts:
                png = out_dir / f"{row['image']}_{suffix}.png"
                png.write_bytes(encode_png(pixels))  # pixels only: no metadata rides along
                tags.append(img_tag(png.read_bytes(), f"{row['image']} {title}", width=128))
            verdict = "good" if row["correct"] else "bad"
            caption = (f"{row['image']}<br>true <b>{row['label']}</b> · predicted "
                       f"<b class='{verdict}'>{row['predicted']}</b> · confidence {row['confidence']:.2f}")
            figures.append(f"<figure>{''.join(tags)}<figcaption>{caption}</figcaption></figure>")
        sections.append(f"<h2>{cls}</h2><div class='gallery'>{''.join(figures)}</div>")
    shown = ", ".join(["original"] + [f"{CAM_METHODS[m][0]} overlay" for m in methods])
    intro = (f"<p>{' and '.join(CAM_METHODS[m][0] for m in methods)} (tf-keras-vis) for the predicted class: "
             f"{shown}. Per class the most confident correct predictions come first, then the most confident "
             "errors.</p>")
    return page(f"{' / '.join(CAM_METHODS[m][0] for m in methods)} gallery (test split)", intro + "".join(sections))


def cam_layer(model) -> str:
    """The layer the maps are taken at, for the gallery's annotation (an ensemble: every member's)."""
    from dermpipe.model.ensemble import is_ensemble, member_layers

    if is_ensemble(model):
        return ", ".join(f"{m.name}/{last_feature_map_layer(m).name}" for m in member_layers(model))
    return last_feature_map_layer(model).name
