"""The cross-validated ensemble as ONE Keras model with a single model's contract.

`build_ensemble(members)` wires the fold models (or the sweep's top configurations) into one functional model, so
that evaluate, explain, profile, the gate, serve and monitor take it unchanged:

- inputs: the image at one resolution (the first member's unless `image_size` is given), plus the raw metadata
  inputs when any member is a metadata-fusion model; a member trained at another size gets a bilinear Resizing layer
  inside the graph, an image-only member gets the image alone. The serving signature therefore stays one size.
- output "probabilities": the weighted mean of the members' probabilities, each optionally temperature-scaled
  (softmax(log p / T), the same as dividing the member's logits by T), computed by `ProbabilityAverage`.
- layer "pool" (the embedding of dermpipe.model.export, what the drift monitor profiles): the concatenation of every
  member's own "pool" embedding. The ensemble's answer depends on every member, so drift that only one member's
  features see must show; averaging the embeddings instead would mix unrelated bases (each fold model learns its
  own), and one member's alone would miss the others' drift. The monitor projects it on the training PCA as usual.
- each member is a nested model "member_<i>" with three outputs: its probabilities, its "pool" embedding and its last
  feature map. The feature map is unused by the ensemble's outputs but is a tensor of the outer graph, so Grad-CAM of
  the ensemble (dermpipe.model.evaluation.ensemble_cam) can take the ensemble's gradient there after model.keras is
  loaded again.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import layers, ops

from dermpipe.model.metadata_inputs import IMAGE_INPUT, image_size, metadata_keras_inputs, takes_metadata

AVERAGE_LAYER = "probabilities"
EMBEDDING_LAYER = "pool"
MEMBER_PREFIX = "member_"
EPSILON = 1e-7


@keras.saving.register_keras_serializable(package="dermpipe")
class ProbabilityAverage(layers.Layer):
    """[p_1, ..., p_k, embedding] (p_i [N, C]) -> sum_i w_i * softmax(log(p_i) / T_i): the ensemble's probabilities.

    The embedding (the "pool" concatenation) is taken and ignored: it is what keeps the "pool" layer inside the
    model's graph (Keras keeps only the layers on a path to an output), so export finds it as in a single model.
    The weights are normalised to sum to 1, so the output is a probability vector; T_i = 1 leaves p_i as it is.
    Always float32 (under mixed precision too); no trainable weights: weights and temperatures are chosen on the
    out-of-fold predictions, never by gradient descent."""

    def __init__(self, member_weights: Sequence[float], temperatures: Sequence[float], **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.member_weights, self.temperatures = check_combination(member_weights, temperatures)

    def call(self, inputs):
        total = 0.0
        probabilities = inputs[:-1]
        for weight, temperature, p in zip(self.member_weights, self.temperatures, probabilities, strict=True):
            p = ops.cast(p, "float32")
            if temperature != 1.0:
                p = ops.softmax(ops.log(ops.maximum(p, EPSILON)) / temperature, axis=-1)
            total = total + weight * p
        return total

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "member_weights": list(self.member_weights),
                "temperatures": list(self.temperatures)}


def check_combination(weights: Sequence[float], temperatures: Sequence[float]) -> tuple[list[float], list[float]]:
    """(weights normalised to sum 1, temperatures) or a ValueError naming what is wrong."""
    weights, temperatures = [float(w) for w in weights], [float(t) for t in temperatures]
    if len(weights) != len(temperatures) or not weights:
        raise ValueError(f"ensemble: {len(weights)} member_weights and {len(temperatures)} temperatures; expected "
                         "one of each per member, at least one member")
    if min(weights) < 0 or sum(weights) <= 0:
        raise ValueError(f"ensemble member_weights {weights}: expected non-negative weights with a positive sum")
    if min(temperatures) <= 0:
        raise ValueError(f"ensemble temperatures {temperatures}: expected positive temperatures")
    total = sum(weights)
    return [w / total for w in weights], temperatures


def member_view(member: keras.Model, index: int) -> keras.Model:
    """The member as a nested model with outputs [probabilities, pool embedding, last feature map] (weights shared)."""
    from dermpipe.model.backbones import last_feature_map_layer

    features = last_feature_map_layer(member)
    if features is None:
        raise ValueError(f"ensemble member {index} ({member.name}): no convolutional feature map; Grad-CAM of the "
                         "ensemble needs one per member")
    inputs = member.input if takes_metadata(member) else member.inputs[0]
    return keras.Model(inputs, [member.output, member.get_layer(EMBEDDING_LAYER).output, features.output],
                       name=f"{MEMBER_PREFIX}{index}")


def build_ensemble(members: Sequence[keras.Model], *, weights: Sequence[float] | None = None,
                   temperatures: Sequence[float] | None = None, image_size_: int | None = None,
                   name: str = "dermpipe_ensemble") -> keras.Model:
    """One functional model averaging `members`' probabilities (see the module docstring); `weights` default to
    uniform, `temperatures` to 1, `image_size_` to the first member's resolution."""
    if not members:
        raise ValueError("ensemble: expected at least one member model, got none")
    n_classes = {int(m.output_shape[-1]) for m in members}
    if len(n_classes) != 1:
        raise ValueError(f"ensemble members answer {sorted(n_classes)} classes; expected the same number for all")
    size = image_size_ or image_size(members[0])
    image = keras.Input((size, size, 3), name=IMAGE_INPUT)
    metadata = metadata_keras_inputs() if any(takes_metadata(m) for m in members) else {}
    probabilities, embeddings = [], []
    for index, member in enumerate(members):
        pixels = image
        if image_size(member) != size:
            own = image_size(member)
            pixels = layers.Resizing(own, own, interpolation="bilinear", name=f"resize_{index}")(image)
        member_inputs = {IMAGE_INPUT: pixels, **metadata} if takes_metadata(member) else pixels
        p, embedding, _features = member_view(member, index)(member_inputs)
        probabilities.append(p)
        embeddings.append(embedding)
    k = len(members)
    pool = (layers.Concatenate(name=EMBEDDING_LAYER) if k > 1 else layers.Identity(name=EMBEDDING_LAYER))(
        embeddings if k > 1 else embeddings[0])
    average = ProbabilityAverage(weights if weights is not None else [1.0] * k,
                                 temperatures if temperatures is not None else [1.0] * k,
                                 name=AVERAGE_LAYER)([*probabilities, pool])
    inputs = {IMAGE_INPUT: image, **metadata} if metadata else image
    return keras.Model(inputs, average, name=name)


def is_ensemble(model) -> bool:
    """Whether `model` is a dermpipe ensemble (its "probabilities" layer is a ProbabilityAverage)."""
    try:
        return isinstance(model.get_layer(AVERAGE_LAYER), ProbabilityAverage)
    except ValueError:
        return False


def member_layers(ensemble) -> list[keras.Model]:
    """The nested member models of an ensemble, in member order."""
    found = [layer for layer in ensemble.layers if layer.name.startswith(MEMBER_PREFIX)]
    return sorted(found, key=lambda layer: int(layer.name[len(MEMBER_PREFIX):]))
