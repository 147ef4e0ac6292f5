"""Model zoo: a keras.applications backbone (or a small CNN) with augmentation and preprocessing inside the model.

The model takes raw RGB pixels in [0, 255] at the training resolution, so serving sends pixels, not
preprocessed tensors. Augmentation is one fused layer (dermpipe.model.augment.RandomAugment, named "augmentation"),
active only in training (Keras calls it with training=False at inference). Models holding dermpipe's own layers
load with `load_classifier` (importing this module registers them). The backbone is built on the outer model's
graph (input_tensor=...) so its layers are the model's own: freezing, fine-tuning and Grad-CAM reach them directly.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
from keras import layers, ops

from dermpipe.model.augment import LAYER_NAME, RandomAugment
from dermpipe.model.backbones import check_backbone
from dermpipe.model.ensemble import ProbabilityAverage  # noqa: F401 - registers the ensembles' averaging layer
from dermpipe.model.metadata_inputs import MetadataEncoding  # noqa: F401 - registers the fusion models' encoding layer

# ImageNet channel means (BGR) of the "caffe" preprocessing that keras.applications.ResNet50 expects.
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


@dataclass(frozen=True)
class Backbone:
    name: str
    build: Callable[..., keras.Model] | None  # None: a from-scratch net of _FROM_SCRATCH
    includes_preprocessing: bool  # the application rescales [0, 255] itself; False: dermpipe adds the layer


def _apps() -> dict[str, Backbone]:
    apps = keras.applications
    return {
        "efficientnet_b0": Backbone("efficientnet_b0", apps.EfficientNetB0, True),
        "efficientnet_b1": Backbone("efficientnet_b1", apps.EfficientNetB1, True),
        "efficientnet_b2": Backbone("efficientnet_b2", apps.EfficientNetB2, True),
        "efficientnet_b3": Backbone("efficientnet_b3", apps.EfficientNetB3, True),
        "efficientnet_b4": Backbone("efficientnet_b4", apps.EfficientNetB4, True),
        "mobilenet_v3_small": Backbone("mobilenet_v3_small", apps.MobileNetV3Small, True),
        "mobilenet_v3_large": Backbone("mobilenet_v3_large", apps.MobileNetV3Large, True),
        "resnet50": Backbone("resnet50", apps.ResNet50, False),
        "simple_cnn": Backbone("simple_cnn", None, False),
        "small_resnet": Backbone("small_resnet", None, False),
    }




def resolve_weights(weights: str) -> str | None:
    """'none' -> None (train from scratch); 'imagenet' -> Keras' cache (baked into the GPU image); a local file as
    it is; a gs:// (or any tf.io.gfile) URI -> copied to a local temporary file (Keras loads local files only)."""
    if weights in ("", "none", "None"):
        return None
    if weights == "imagenet":
        return "imagenet"
    if "://" in weights:
        return _fetch_weights(weights)
    if not Path(weights).is_file():
        raise FileNotFoundError(
            f"weights file {weights!r} not found; pass 'imagenet' (needs the Keras cache of the GPU image), "
            "'none' to train from scratch, or the path (local or gs://) of a .h5 weights file for this backbone "
            "without its top"
        )
    return weights


def _fetch_weights(uri: str) -> str:
    import tensorflow as tf

    if not tf.io.gfile.exists(uri):
        raise FileNotFoundError(f"weights file {uri!r} not found (checked with tf.io.gfile); check the bucket, the "
                                "object name and the service account's read access, or pass 'imagenet' / 'none'")
    local = Path(tempfile.mkdtemp(prefix="dermpipe-weights-")) / Path(uri).name
    tf.io.gfile.copy(uri, str(local), overwrite=True)
    return str(local)


def augmentation(seed: int | None, **ranges) -> RandomAugment:
    """The seed notebook's geometric augmentations (rotation 20 deg, shift 0.2, zoom 0.2, flips) fused into one
    random affine transform, plus brightness and contrast; `ranges` overrides RandomAugment's defaults."""
    return RandomAugment(seed=seed, name=LAYER_NAME, **ranges)


@keras.saving.register_keras_serializable(package="dermpipe")
class CaffePreprocess(layers.Layer):
    """RGB [0, 255] -> BGR minus the ImageNet means: keras.applications.resnet50.preprocess_input, as a layer."""

    def call(self, images):
        return ops.flip(images, axis=-1) - ops.convert_to_tensor(CAFFE_MEAN_BGR, dtype=images.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape


def load_classifier(path: Path | str, *, compile: bool = True) -> keras.Model:
    """Load a dermpipe model.keras (dermpipe's layers are registered by importing this module); every stage that
    reads a trained model must load it through here, or Keras cannot rebuild the augmentation layer."""
    return keras.models.load_model(str(path), compile=compile)


def _simple_cnn(x):
    x = layers.Rescaling(1.0 / 255, name="rescale")(x)
    for i, filters in enumerate((32, 64, 128)):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{i}")(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"bn{i}")(x)  # small data: converge fast
        x = layers.Activation("relu", name=f"relu{i}")(x)
        x = layers.MaxPooling2D(name=f"pool{i}")(x)
    return x, []


# small_resnet: a ResNet-18-style net sized for a 2-core CPU at 64-128 px (about 1.2 M weights): a strided stem,
# then one basic residual block per stage at 32, 64, 128 and 256 channels, each later stage halving the resolution.
SMALL_RESNET_STAGES = (32, 64, 128, 256)


def _conv_bn(x, filters: int, strides: int, name: str, relu: bool = True):
    x = layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x) if relu else x


def _basic_block(x, filters: int, strides: int, name: str):
    """He et al.'s basic block (two 3x3 convolutions); a 1x1 projection on the shortcut when the shape changes."""
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=strides, use_bias=False, name=f"{name}_proj")(x)
        shortcut = layers.BatchNormalization(momentum=0.9, name=f"{name}_proj_bn")(shortcut)
    y = _conv_bn(x, filters, strides, f"{name}_a")
    y = _conv_bn(y, filters, 1, f"{name}_b", relu=False)
    return layers.Activation("relu", name=f"{name}_out")(layers.Add(name=f"{name}_add")([shortcut, y]))


def _small_resnet(x):
    x = layers.Rescaling(1.0 / 255, name="rescale")(x)
    x = _conv_bn(x, SMALL_RESNET_STAGES[0], 2, "stem")  # stride 2 at once: most of a CPU's cost is at full size
    for i, filters in enumerate(SMALL_RESNET_STAGES):
        x = _basic_block(x, filters, 1 if i == 0 else 2, f"stage{i}")
    return x, []


_FROM_SCRATCH = {"simple_cnn": _simple_cnn, "small_resnet": _small_resnet}


def build_classifier(
    backbone: str, image_size: int, n_classes: int, *, weights: str = "none", dropout: float = 0.2, seed: int = 42,
    augment: dict | None = None, metadata_fusion: bool = False, metadata_units: int = 32,
) -> tuple[keras.Model, list[keras.layers.Layer]]:
    """The classifier and the list of backbone layers (frozen for the head phase, partly thawed to fine-tune);
    `augment` overrides the augmentation ranges (RandomAugment's arguments).

    With `metadata_fusion` the model takes a dict {"image", "age_approx", "sex", "anatom_site_general"}: the raw
    metadata is encoded in the model (dermpipe.model.metadata_inputs.MetadataEncoding), goes through a small dense
    branch
    (`metadata_units` ReLU units) and is concatenated with the image embedding (still the layer "pool") before the
    softmax head. Without it the model is exactly the image-only classifier."""
    check_backbone(backbone)
    zoo = _apps()
    spec = zoo[backbone]
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = augmentation(seed, **(augment or {}))(inputs)
    if spec.build is None:
        features, backbone_layers = _FROM_SCRATCH[backbone](x)
    else:
        if not spec.includes_preprocessing:
            x = CaffePreprocess(name="preprocess")(x)
        extra = {"include_preprocessing": True} if backbone.startswith("mobilenet") else {}
        base = spec.build(include_top=False, weights=resolve_weights(weights), input_tensor=x, **extra)
        features, backbone_layers = base.output, [layer for layer in base.layers if layer is not base.input]
    x = layers.GlobalAveragePooling2D(name="pool")(features)
    x = layers.Dropout(dropout, name="head_dropout")(x)
    if metadata_fusion:
        x, inputs = _fuse_metadata(x, inputs, metadata_units, dropout)
    outputs = layers.Dense(n_classes, activation="softmax", name="probabilities", dtype="float32")(x)
    name = f"dermpipe_{backbone}_metadata" if metadata_fusion else f"dermpipe_{backbone}"
    return keras.Model(inputs, outputs, name=name), backbone_layers


def _fuse_metadata(embedding, image_input, units: int, dropout: float):
    """(image embedding ++ metadata branch, the model's dict of inputs)."""
    from dermpipe.model.metadata_inputs import ENCODING_LAYER, IMAGE_INPUT, metadata_keras_inputs

    raw = metadata_keras_inputs()
    meta = MetadataEncoding(name=ENCODING_LAYER)(raw)
    meta = layers.Dense(units, activation="relu", name="metadata_dense")(meta)
    meta = layers.Dropout(dropout, name="metadata_dropout")(meta)
    fused = layers.Concatenate(name="fusion")([embedding, meta])
    return fused, {IMAGE_INPUT: image_input, **raw}
