"""Per-image statistics shared by the prediction log (serve), the reference profile (profile) and the drift monitor.

Both sides must compute the same numbers from the same code, or drift is an artefact of the code. The statistics
describe the pixels the model sees: one TensorFlow function over a batch of images already decoded and resized by
imagedata.decode_resize_bytes to the model's input size. In the server they come out of the same graph call as the
prediction (a fraction of a millisecond per image, where a separate PIL decode + HSV conversion cost about 12 ms of
CPU per 512x512 JPEG and doubled the server's CPU per request). The original size comes from the image header.
"""

from __future__ import annotations

import functools
import io

import numpy as np

PIXEL_COLUMNS: tuple[str, ...] = (
    "brightness",  # mean luma, 0..1
    "contrast",  # std of luma, 0..1
    "saturation",  # mean HSV saturation, 0..1
    "hue_x",  # saturation-weighted mean hue as a vector (x, y): no wrap-around at red, where skin sits
    "hue_y",
    "sharpness",  # variance of the 4-neighbour Laplacian of luma (x 1e3) at the model's input size
)
SIZE_COLUMNS: tuple[str, ...] = (
    "width",  # original pixels
    "height",
    "aspect",  # width / height
)
STAT_COLUMNS: tuple[str, ...] = PIXEL_COLUMNS + SIZE_COLUMNS
LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601


def pixel_statistics(pixels):
    """float32 [N, len(PIXEL_COLUMNS)] from RGB pixels float32 [N, S, S, 3] in 0..255 (a tf.Tensor or array)."""
    import tensorflow as tf

    rgb = tf.clip_by_value(tf.convert_to_tensor(pixels, tf.float32) / 255.0, 0.0, 1.0)
    luma = tf.tensordot(rgb, tf.constant(LUMA_WEIGHTS, tf.float32), axes=[[3], [0]])  # [N, S, S]
    hsv = tf.image.rgb_to_hsv(rgb)
    angle = hsv[..., 0] * (2.0 * np.pi)
    saturation = hsv[..., 1]
    weight = tf.reduce_sum(saturation, axis=[1, 2])
    weight = tf.where(weight > 0, weight, tf.ones_like(weight))  # grey image: hue vector (0, 0)
    laplacian = (-4.0 * luma[:, 1:-1, 1:-1] + luma[:, :-2, 1:-1] + luma[:, 2:, 1:-1] + luma[:, 1:-1, :-2]
                 + luma[:, 1:-1, 2:])
    _, laplacian_variance = tf.nn.moments(laplacian, axes=[1, 2])
    mean_luma, var_luma = tf.nn.moments(luma, axes=[1, 2])
    return tf.stack([
        mean_luma,
        tf.sqrt(tf.maximum(var_luma, 0.0)),
        tf.reduce_mean(saturation, axis=[1, 2]),
        tf.reduce_sum(tf.cos(angle) * saturation, axis=[1, 2]) / weight,
        tf.reduce_sum(tf.sin(angle) * saturation, axis=[1, 2]) / weight,
        laplacian_variance * 1e3,
    ], axis=1)


def size_statistics(width: int, height: int) -> dict[str, float]:
    return {"width": float(width), "height": float(height), "aspect": float(width / height) if height else 0.0}


def statistics_rows(pixel_stats: np.ndarray, sizes: list[tuple[int, int]]) -> list[dict[str, float]]:
    """One STAT_COLUMNS dict per image from pixel_statistics' output and the originals' (width, height)."""
    pixel_stats = np.asarray(pixel_stats, np.float64)
    if len(pixel_stats) != len(sizes):
        raise ValueError(f"{len(pixel_stats)} rows of pixel statistics for {len(sizes)} image sizes")
    return [{**dict(zip(PIXEL_COLUMNS, map(float, row), strict=True)), **size_statistics(*size)}
            for row, size in zip(pixel_stats, sizes, strict=True)]


def header_size(data: bytes) -> tuple[int, int]:
    """(width, height) of an encoded image from its header (PIL opens lazily: no pixel decode); PIL errors
    propagate."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return image.size


@functools.cache
def _bytes_to_stats(image_size: int):
    """A traced function (one per size): encoded bytes -> pixel statistics [len(PIXEL_COLUMNS)]."""
    import tensorflow as tf

    from dermpipe.data.images import decode_resize_bytes

    return tf.function(lambda data: pixel_statistics(decode_resize_bytes(data, image_size)[None])[0],
                       input_signature=[tf.TensorSpec([], tf.string)])


def statistics_from_bytes(data: bytes, image_size: int) -> dict[str, float]:
    """STAT_COLUMNS of one encoded image (JPEG/PNG) as a model of input size image_size sees it; decode errors
    (PIL for the header, TensorFlow for the pixels) propagate to the caller."""
    width, height = header_size(data)
    return statistics_rows(_bytes_to_stats(image_size)(data).numpy()[None], [(width, height)])[0]
