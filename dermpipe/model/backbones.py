"""The backbones dermpipe.model.zoo builds, and where a built model's last feature map is.

Named here, without Keras at import, so that pre-flight checks a backbone name quickly (TrainParams) and so that the
ensemble (dermpipe.model.ensemble) and Grad-CAM (dermpipe.model.evaluation.gradcam) find a member's feature map in
one place below both.
"""

BACKBONES: tuple[str, ...] = (
    "efficientnet_b0", "efficientnet_b1", "efficientnet_b2", "efficientnet_b3", "efficientnet_b4",
    "mobilenet_v3_small", "mobilenet_v3_large", "resnet50", "simple_cnn", "small_resnet",
)


def check_backbone(backbone: str) -> None:
    """Refuse a backbone the zoo cannot build, naming the ones it can."""
    if backbone not in BACKBONES:
        raise ValueError(f"backbone {backbone!r} is not supported; choose one of {list(BACKBONES)}")


def is_feature_map(layer) -> bool:
    """A 4-D (batch, h, w, channels) output that is not the input or its augmentation."""
    shape = getattr(getattr(layer, "output", None), "shape", None)
    return shape is not None and len(shape) == 4 and not layer.name.startswith(("augmentation", "image"))


def last_feature_map_layer(model):
    """The last layer with a 4-D (batch, h, w, channels) output, searched from the end, inside nested models too."""
    import keras

    for layer in reversed(model.layers):
        if isinstance(layer, keras.Model):
            inner = last_feature_map_layer(layer)
            if inner is not None:
                return inner
        if is_feature_map(layer):
            return layer
    return None
