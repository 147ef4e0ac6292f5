"""An out-of-distribution image set built without downloads, to measure how often the OOD score flags what the model
was not made for: natural photos (scikit-learn's sample images, matplotlib's Grace Hopper portrait), crops of them
(close-ups are what a phone camera sends), a logo and a product photo (screenshot-like), and synthetic images (noise,
gradients, checkerboards, flat colours, text-like stripes).

The set is deterministic for a seed, so a test asserts the same rates on every run.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

SIZE = 256


def _photos() -> Iterator[tuple[str, np.ndarray]]:
    import matplotlib
    from PIL import Image
    from sklearn.datasets import load_sample_images

    sample = load_sample_images()
    for name, image in zip(sample.filenames, sample.images, strict=True):
        yield Path(name).stem, image
    folder = Path(matplotlib.get_data_path()) / "sample_data"
    for name in ("grace_hopper.jpg", "logo2.png", "Minduka_Present_Blue_Pack.png"):
        if (folder / name).is_file():
            with Image.open(folder / name) as handle:
                yield Path(name).stem, np.asarray(handle.convert("RGB"))


def _crops(name: str, image: np.ndarray, rng: np.random.Generator, n: int) -> Iterator[tuple[str, np.ndarray]]:
    height, width = image.shape[:2]
    side = min(height, width)
    for i in range(n):
        crop = int(side * rng.uniform(0.3, 0.7))
        top, left = rng.integers(0, height - crop + 1), rng.integers(0, width - crop + 1)
        yield f"{name}_crop{i}", image[top:top + crop, left:left + crop]


def _synthetic(rng: np.random.Generator) -> Iterator[tuple[str, np.ndarray]]:
    ramp = np.linspace(0, 255, SIZE, dtype=np.float32)
    yield "noise", rng.integers(0, 256, (SIZE, SIZE, 3))
    yield "noise_grey", np.repeat(rng.integers(0, 256, (SIZE, SIZE, 1)), 3, axis=2)
    yield "gradient_h", np.stack([np.tile(ramp, (SIZE, 1))] * 3, axis=2)
    yield "gradient_rgb", np.stack([np.tile(ramp, (SIZE, 1)), np.tile(ramp[:, None], (1, SIZE)),
                                    np.full((SIZE, SIZE), 128.0)], axis=2)
    squares = ((np.arange(SIZE)[:, None] // 32 + np.arange(SIZE)[None, :] // 32) % 2) * 255
    yield "checkerboard", np.stack([squares] * 3, axis=2)
    for name, colour in (("white", (255, 255, 255)), ("black", (0, 0, 0)), ("blue", (30, 60, 200)),
                         ("green", (40, 180, 60))):
        yield f"flat_{name}", np.broadcast_to(np.array(colour), (SIZE, SIZE, 3))
    text = np.full((SIZE, SIZE, 3), 245)
    for row in range(12, SIZE - 12, 18):
        length = int(rng.integers(SIZE // 3, SIZE - 24))
        text[row:row + 8, 12:12 + length] = 30
    yield "text_like", text


def ood_images(seed: int = 0, crops_per_photo: int = 3) -> list[tuple[str, np.ndarray]]:
    """(name, uint8 RGB array) of every image in the set."""
    rng = np.random.default_rng(seed)
    images: list[tuple[str, np.ndarray]] = []
    for name, photo in _photos():
        images.append((name, photo))
        images += list(_crops(name, photo, rng, crops_per_photo))
    images += list(_synthetic(rng))
    return [(name, np.ascontiguousarray(np.clip(image, 0, 255).astype(np.uint8))) for name, image in images]


def write_ood_set(folder: Path, seed: int = 0) -> list[Path]:
    """Write the set as JPEG files (what a client would send) and return their paths."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, image in ood_images(seed):
        path = folder / f"{name}.jpg"
        Image.fromarray(image).save(path, quality=92)
        paths.append(path)
    return paths
