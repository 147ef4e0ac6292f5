"""Grad-CAM of an ensemble (dermpipe.model.ensemble) is Grad-CAM of the ensemble, not of one member.

For each image and its class c, the score is the ensemble's probability of c (an ensemble that averages
probabilities has no logits; a positive per-image factor such as d log p = dp / p would cancel in the normalisation).
Its gradient is taken at every member's last feature map A_j, which carries that member's weight and temperature
through the chain rule. Per member: channel weights = the spatial mean of the gradient, map_j = sum_k w_jk A_jk,
upsampled bilinearly to the input grid (members may see different resolutions); then the maps are summed, ReLU'd and
min-max normalised once. Averaging maps normalised one by one would give every member the same say whatever its
weight and gradient magnitude; explaining one member would explain a model nobody serves.

Upsampling before the ReLU differs from tf-keras-vis' single-model order (ReLU, then zoom) only at the borders of
negative regions; at the feature map's own resolution (`at_input_resolution=False`, one member) the two agree.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from dermpipe.model.ensemble import member_layers

FEATURE_OUTPUT = 2  # a member view's outputs: probabilities, pool embedding, last feature map


def ensemble_cam_maps(ensemble, images: np.ndarray, class_indices: list[int],
                      metadata: Mapping[str, np.ndarray] | None = None, *,
                      at_input_resolution: bool = True) -> np.ndarray:
    """Grad-CAM maps in [0, 1], shape (n, h, w): at the input resolution, or (`at_input_resolution=False`) at the
    first member's feature-map resolution. `metadata` as for cam_maps (None: every value unknown)."""
    import keras
    import tensorflow as tf

    from dermpipe.model.metadata_inputs import model_inputs, takes_metadata

    if len(class_indices) != len(images):
        raise ValueError(f"ensemble Grad-CAM: {len(class_indices)} class_indices for {len(images)} images; expected "
                         "one class per image")
    members = member_layers(ensemble)
    feature_maps = [member_outputs(member)[FEATURE_OUTPUT] for member in members]
    inputs = ensemble.input if takes_metadata(ensemble) else ensemble.inputs[0]
    probe = keras.Model(inputs, [ensemble.output, *feature_maps], name="ensemble_cam_probe")
    x = tf.nest.map_structure(tf.convert_to_tensor, model_inputs(ensemble, images.astype("float32"), metadata))
    classes = tf.constant(np.asarray(class_indices, dtype=np.int32))
    with tf.GradientTape() as tape:
        probabilities, *maps = probe(x, training=False)
        score = tf.gather(tf.cast(probabilities, tf.float32), classes, batch_dims=1)
    gradients = tape.gradient(score, maps)
    grid = tuple(images.shape[1:3]) if at_input_resolution else tuple(maps[0].shape[1:3])
    total = tf.zeros((len(images), *grid), tf.float32)
    for feature_map, gradient in zip(maps, gradients, strict=True):
        if gradient is None:
            raise ValueError(f"ensemble Grad-CAM: the score has no gradient at {feature_map.name}; the member's "
                             "feature map is not on the path to the ensemble's output")
        feature_map, gradient = tf.cast(feature_map, tf.float32), tf.cast(gradient, tf.float32)
        weights = tf.reduce_mean(gradient, axis=(1, 2), keepdims=True)
        member_map = tf.reduce_sum(weights * feature_map, axis=-1)
        total += tf.image.resize(member_map[..., None], grid, method="bilinear")[..., 0]
    return normalise(tf.nn.relu(total).numpy())


def member_outputs(member) -> list:
    """A nested member's outputs as tensors of the ensemble's graph (`member.output` would be its inner graph's)."""
    nodes = member._inbound_nodes  # noqa: SLF001 - Keras exposes a called layer's outer tensors only here
    if len(nodes) != 1:
        raise ValueError(f"ensemble member {member.name} is called {len(nodes)} times; expected once, by the ensemble")
    return list(nodes[0].output_tensors)


def normalise(maps: np.ndarray) -> np.ndarray:
    """Per map (x - min) / (max - min + eps), as tf-keras-vis normalises its CAMs; an all-zero map stays zero."""
    low = maps.min(axis=(1, 2), keepdims=True)
    high = maps.max(axis=(1, 2), keepdims=True)
    return np.clip(np.nan_to_num((maps - low) / (high - low + 1e-7)), 0.0, 1.0).astype(np.float32)
