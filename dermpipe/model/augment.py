"""Training-time augmentation as ONE Keras layer: a fused random affine transform per image plus colour jitter.

Rotation, shift, zoom and the two flips are composed into a single 3x3 matrix per image, so a batch is resampled
once (one `keras.ops.image.affine_transform`, i.e. one ImageProjectiveTransformV3 on TensorFlow) instead of once
per geometric layer as a chain of Random* layers does. Brightness and contrast follow, then the pixels are clipped
to the value range. The layer lives inside the model (on a GPU it runs on the GPU), is active only with
`training=True` and is a registered Keras object, so a `.keras` file holding it loads once this module is imported
(`dermpipe.model.zoo.load_classifier` does that).
"""

from __future__ import annotations

import math

import keras
from keras import ops

LAYER_NAME = "augmentation"


def affine_matrices(angle, shift_x, shift_y, scale, flip_x, flip_y, height: int, width: int):
    """Per-image output->input pixel maps [N, 8] (the ImageProjectiveTransform layout a0 a1 a2 b0 b1 b2 c0 c1).

    The input point sampled for output point p is c + R(angle) @ diag(scale*flip_x, scale*flip_y) @ (p - c) + shift,
    about the image centre c; angle in radians, shifts in pixels, flips +1/-1, all tensors of shape [N].
    """
    cos, sin = ops.cos(angle), ops.sin(angle)
    m00, m01 = cos * scale * flip_x, -sin * scale * flip_y
    m10, m11 = sin * scale * flip_x, cos * scale * flip_y
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    a2 = cx + shift_x - m00 * cx - m01 * cy
    b2 = cy + shift_y - m10 * cx - m11 * cy
    zeros = ops.zeros_like(angle)
    return ops.stack([m00, m01, a2, m10, m11, b2, zeros, zeros], axis=1)


def _reflect(coord, size: int):
    """Half-sample symmetric reflection (d c b a | a b c d | d c b a) of continuous pixel coordinates into
    [0, size - 1]."""
    period = 2.0 * size
    folded = ops.mod(coord + 0.5, period)
    return ops.clip(ops.where(folded < size, folded, period - folded) - 0.5, 0.0, size - 1.0)


def resample_bilinear(images, matrices):
    """affine_transform(bilinear, reflect) with gathers and arithmetic only, so XLA compiles it
    (ImageProjectiveTransformV3 has no XLA kernel). images [N, H, W, C] float, matrices [N, 8] as affine_matrices."""
    n, height, width, channels = ops.shape(images)[0], images.shape[1], images.shape[2], images.shape[3]
    ys, xs = ops.meshgrid(ops.arange(height, dtype="float32"), ops.arange(width, dtype="float32"), indexing="ij")
    xs, ys = xs[None], ys[None]
    m = [matrices[:, i, None, None] for i in range(6)]
    src_x = _reflect(m[0] * xs + m[1] * ys + m[2], width)
    src_y = _reflect(m[3] * xs + m[4] * ys + m[5], height)
    x0, y0 = ops.floor(src_x), ops.floor(src_y)
    wx, wy = (src_x - x0)[..., None], (src_y - y0)[..., None]
    x0i, y0i = ops.cast(x0, "int32"), ops.cast(y0, "int32")
    x1i, y1i = ops.minimum(x0i + 1, width - 1), ops.minimum(y0i + 1, height - 1)
    flat = ops.reshape(images, (-1, channels))
    base = (ops.arange(n, dtype="int32") * (height * width))[:, None, None]

    def pick(yi, xi):
        return ops.take(flat, ops.reshape(base + yi * width + xi, (-1,)), axis=0)

    shape = (n, height, width, channels)
    top = ops.reshape(pick(y0i, x0i), shape) * (1 - wx) + ops.reshape(pick(y0i, x1i), shape) * wx
    bottom = ops.reshape(pick(y1i, x0i), shape) * (1 - wx) + ops.reshape(pick(y1i, x1i), shape) * wx
    return top * (1 - wy) + bottom * wy


@keras.saving.register_keras_serializable(package="dermpipe")
class RandomAugment(keras.layers.Layer):
    """Random rotation (+-`rotation` degrees), shift (+-`shift` of the size), zoom (scale 1 +- `zoom`), horizontal
    and vertical flips (each with probability 1/2), fused into one affine resampling per image; then brightness
    (+- `brightness` of the value range) and contrast (factor 1 +- `contrast` about each image's channel means).
    Identity at inference. Inputs: float images [N, H, W, C] in `value_range`. `xla=True` resamples with gathers
    (resample_bilinear: bilinear, reflect) so the train step compiles with jit_compile."""

    def __init__(self, rotation: float = 20.0, shift: float = 0.2, zoom: float = 0.2, horizontal_flip: bool = True,
                 vertical_flip: bool = True, brightness: float = 0.1, contrast: float = 0.1,
                 fill_mode: str = "reflect", interpolation: str = "bilinear",
                 value_range: tuple[float, float] = (0.0, 255.0), seed: int | None = None, xla: bool = False,
                 **kwargs):
        kwargs.setdefault("dtype", "float32")  # resampling stays in float32 under mixed precision
        super().__init__(**kwargs)
        for name, value in (("rotation", rotation), ("shift", shift), ("zoom", zoom), ("brightness", brightness),
                            ("contrast", contrast)):
            if value < 0:
                raise ValueError(f"RandomAugment: {name}={value} must be >= 0 (it is a symmetric range)")
        if zoom >= 1 or contrast >= 1:
            raise ValueError(f"RandomAugment: zoom={zoom} and contrast={contrast} must be < 1 (factors 1 +- range)")
        self.rotation, self.shift, self.zoom = float(rotation), float(shift), float(zoom)
        self.horizontal_flip, self.vertical_flip = bool(horizontal_flip), bool(vertical_flip)
        self.brightness, self.contrast = float(brightness), float(contrast)
        self.fill_mode, self.interpolation = fill_mode, interpolation
        self.value_range = (float(value_range[0]), float(value_range[1]))
        self.seed, self.xla = seed, bool(xla)
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = False

    def _uniform(self, n, low: float, high: float):
        return keras.random.uniform((n,), minval=low, maxval=high, seed=self.seed_generator)

    def _flip(self, n, enabled: bool):
        if not enabled:
            return ops.ones((n,))
        coin = keras.random.uniform((n,), seed=self.seed_generator)
        return ops.where(coin < 0.5, -1.0, 1.0)

    def transform_parameters(self, n, height: int, width: int):
        """Random per-image matrices [N, 8], brightness offsets [N] and contrast factors [N]."""
        angle = self._uniform(n, -self.rotation, self.rotation) * (math.pi / 180.0)
        shift_x = self._uniform(n, -self.shift, self.shift) * width
        shift_y = self._uniform(n, -self.shift, self.shift) * height
        scale = self._uniform(n, 1.0 - self.zoom, 1.0 + self.zoom)
        flip_x, flip_y = self._flip(n, self.horizontal_flip), self._flip(n, self.vertical_flip)
        low, high = self.value_range
        offset = self._uniform(n, -self.brightness, self.brightness) * (high - low)
        factor = self._uniform(n, 1.0 - self.contrast, 1.0 + self.contrast)
        return affine_matrices(angle, shift_x, shift_y, scale, flip_x, flip_y, height, width), offset, factor

    def call(self, images, training=None):
        if not training:
            return images
        images = ops.cast(images, self.compute_dtype)
        shape = ops.shape(images)
        matrices, offset, factor = self.transform_parameters(shape[0], images.shape[1], images.shape[2])
        if self.xla:
            out = resample_bilinear(images, matrices)
        else:
            out = ops.image.affine_transform(images, matrices, interpolation=self.interpolation,
                                             fill_mode=self.fill_mode, data_format="channels_last")
        if self.contrast > 0:
            mean = ops.mean(out, axis=(1, 2), keepdims=True)
            out = (out - mean) * factor[:, None, None, None] + mean
        if self.brightness > 0:
            out = out + offset[:, None, None, None]
        return ops.clip(out, self.value_range[0], self.value_range[1])

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rotation": self.rotation, "shift": self.shift, "zoom": self.zoom,
                "horizontal_flip": self.horizontal_flip, "vertical_flip": self.vertical_flip,
                "brightness": self.brightness, "contrast": self.contrast, "fill_mode": self.fill_mode,
                "interpolation": self.interpolation, "value_range": list(self.value_range), "seed": self.seed,
                "xla": self.xla}
