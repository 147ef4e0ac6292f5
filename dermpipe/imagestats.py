"""Per-image statistics shared by the prediction log (serve) and the drift monitor (monitor).

Both sides must compute the same numbers from the same code, or drift is an artefact of the code. Statistics are
taken on a copy downsized to at most STATS_SIDE pixels on its long side, so a 6000x4000 original and its 512x512
resize give comparable values and the cost does not depend on the original's size (a JPEG is decoded directly at
the smallest DCT scale that still covers STATS_SIDE).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

STATS_SIDE = 256
STAT_COLUMNS: tuple[str, ...] = (
    "brightness",  # mean luma, 0..1
    "contrast",  # std of luma, 0..1
    "saturation",  # mean HSV saturation, 0..1
    "hue_x",  # saturation-weighted mean hue as a vector (x, y): no wrap-around at red, where skin sits
    "hue_y",
    "sharpness",  # variance of the Laplacian of luma (x 1e3) at STATS_SIDE
    "width",  # original pixels
    "height",
    "aspect",  # width / height
)


def image_statistics(image: Image.Image) -> dict[str, float]:
    """The STAT_COLUMNS of one image (any mode; converted to RGB)."""
    width, height = image.size
    if image.format == "JPEG":  # decode at 1/2..1/8 scale in the DCT domain: a fraction of the work, same statistics
        image.draft("RGB", (STATS_SIDE, STATS_SIDE))
    small = image.convert("RGB")
    small.thumbnail((STATS_SIDE, STATS_SIDE), Image.Resampling.BILINEAR)
    rgb = np.asarray(small, dtype=np.float32) / 255.0
    luma = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
    hsv = np.asarray(small.convert("HSV"), dtype=np.float32) / 255.0
    hue_angle = hsv[..., 0] * 2 * np.pi
    sat = hsv[..., 1]
    weight = sat.sum() or 1.0
    laplacian = (
        -4 * luma[1:-1, 1:-1] + luma[:-2, 1:-1] + luma[2:, 1:-1] + luma[1:-1, :-2] + luma[1:-1, 2:]
    ) if min(luma.shape) > 2 else np.zeros(1, np.float32)
    return {
        "brightness": float(luma.mean()),
        "contrast": float(luma.std()),
        "saturation": float(sat.mean()),
        "hue_x": float((np.cos(hue_angle) * sat).sum() / weight),
        "hue_y": float((np.sin(hue_angle) * sat).sum() / weight),
        "sharpness": float(laplacian.var() * 1e3),
        "width": float(width),
        "height": float(height),
        "aspect": float(width / height) if height else 0.0,
    }


def statistics_from_bytes(data: bytes) -> dict[str, float]:
    """image_statistics of an encoded image (JPEG/PNG bytes); PIL errors propagate to the caller."""
    with Image.open(io.BytesIO(data)) as image:
        return image_statistics(image)
