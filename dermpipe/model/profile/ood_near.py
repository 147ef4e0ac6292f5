"""A download-free near-OOD set: the validation images as another dermatoscope would take them.

A new device changes the white balance (a colour cast), the illumination fall-off (vignetting), the focus (blur) and
the magnification, while the lesions stay lesions. These images are what a score must catch that a far set
(dermoscopy versus holiday photos) cannot tell apart. It stands in for a new clinic's images only as far as a
device changes them: a new population (skin types, lesion mix) is not simulated; the benchmark (benchmarks/ood.py)
measures that on real collections.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

NEAR_SET_NAME = "new_device"


def device_shift(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One image [H, W, 3] uint8 through a random new device: colour cast, vignetting, blur, magnification, each
    at one random strength per image (from barely visible to strong), so that the set ranks scores instead of
    every good score catching all of it."""
    from PIL import Image, ImageFilter

    strength = rng.uniform(0.2, 1.0)
    height, width = image.shape[:2]
    zoom = 1.0 + 0.8 * strength * rng.uniform(0.5, 1.0)  # magnification: the centre crop filled to the frame
    crop_h, crop_w = max(1, int(height / zoom)), max(1, int(width / zoom))
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    picture = Image.fromarray(image[top:top + crop_h, left:left + crop_w]).resize((width, height), Image.BILINEAR)
    picture = picture.filter(ImageFilter.GaussianBlur(0.025 * strength * rng.uniform(0.4, 1.0) * max(height, width)))
    pixels = np.asarray(picture, np.float64)
    gains = 1.0 + 0.3 * strength * rng.uniform(-1.0, 1.0, 3)  # white balance
    gains /= gains.mean()
    y, x = np.mgrid[0:height, 0:width]
    radius = np.hypot((y - height / 2) / (height / 2), (x - width / 2) / (width / 2)) / np.sqrt(2)
    vignette = 1.0 - 0.7 * strength * rng.uniform(0.6, 1.0) * radius**2
    return np.clip(pixels * gains * vignette[..., None], 0, 255).astype(np.uint8)


def write_near_set(paths: Sequence[Path | str], folder: Path, seed: int = 0) -> list[Path]:
    """Each image of `paths` through its own random device, as a JPEG in `folder`; returns the written paths."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for i, path in enumerate(paths):
        with Image.open(path) as handle:
            pixels = np.asarray(handle.convert("RGB"))
        out = folder / f"{i:05d}_{Path(path).stem}.jpg"
        Image.fromarray(device_shift(pixels, rng)).save(out, quality=92)
        written.append(out)
    return written
