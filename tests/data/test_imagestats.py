import io

import numpy as np
import pytest
from PIL import Image

from dermpipe.data.image_stats import (
    PIXEL_COLUMNS,
    STAT_COLUMNS,
    pixel_statistics,
    statistics_from_bytes,
    statistics_rows,
)


def _encode(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def test_known_colours():
    red = statistics_from_bytes(_encode(Image.new("RGB", (40, 20), (255, 0, 0))), 16)
    assert set(red) == set(STAT_COLUMNS)
    assert red["hue_x"] == pytest.approx(1.0) and red["hue_y"] == pytest.approx(0.0, abs=1e-6)
    assert red["saturation"] == pytest.approx(1.0) and red["contrast"] == pytest.approx(0.0, abs=1e-6)
    assert red["brightness"] == pytest.approx(0.299, abs=1e-6) and red["sharpness"] == pytest.approx(0.0, abs=1e-6)
    assert (red["width"], red["height"], red["aspect"]) == (40.0, 20.0, 2.0)  # the original's size, not the model's
    grey = statistics_from_bytes(_encode(Image.new("L", (10, 10), 128)), 8)
    assert grey["saturation"] == 0.0 and grey["brightness"] == pytest.approx(128 / 255, abs=1e-3)
    assert (grey["hue_x"], grey["hue_y"]) == (0.0, 0.0)  # no hue without saturation (and no division by zero)


def test_values_match_a_numpy_oracle_on_real_pixels(isic_sample):
    """pixel_statistics against the definitions written out in numpy (HSV via colorsys-style formulas)."""
    jpeg = next(isic_sample.rglob("*.jpg")).read_bytes()
    from dermpipe.data.images import decode_resize_bytes

    pixels = decode_resize_bytes(jpeg, 32).numpy()
    got = dict(zip(PIXEL_COLUMNS, pixel_statistics(pixels[None]).numpy()[0], strict=True))
    rgb = pixels.astype(np.float64) / 255
    luma = rgb @ np.array([0.299, 0.587, 0.114])
    top, bottom = rgb.max(-1), rgb.min(-1)
    sat = np.where(top > 0, (top - bottom) / np.where(top > 0, top, 1), 0)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    span = np.where(top > bottom, top - bottom, 1)
    hue = np.select([top == r, top == g], [((g - b) / span) % 6, (b - r) / span + 2], (r - g) / span + 4) / 6
    angle = 2 * np.pi * np.where(top > bottom, hue, 0)
    lap = -4 * luma[1:-1, 1:-1] + luma[:-2, 1:-1] + luma[2:, 1:-1] + luma[1:-1, :-2] + luma[1:-1, 2:]
    expected = {"brightness": luma.mean(), "contrast": luma.std(), "saturation": sat.mean(),
                "hue_x": (np.cos(angle) * sat).sum() / sat.sum(), "hue_y": (np.sin(angle) * sat).sum() / sat.sum(),
                "sharpness": lap.var() * 1e3}
    for column, value in expected.items():
        assert got[column] == pytest.approx(value, rel=1e-3, abs=1e-4), column


def test_statistics_are_those_of_the_model_input_so_resolution_barely_matters():
    rng = np.random.default_rng(0)
    base = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).resize((1024, 1024), Image.BILINEAR)
    large = statistics_from_bytes(_encode(base), 64)
    small = statistics_from_bytes(_encode(base.resize((256, 256), Image.BILINEAR)), 64)
    for column in ("brightness", "contrast", "saturation", "hue_x", "hue_y"):
        assert large[column] == pytest.approx(small[column], abs=0.02), column
    assert large["width"] == 1024 and small["width"] == 256


def test_sharpness_orders_blur_and_rows_carry_sizes():
    rng = np.random.default_rng(1)
    sharp = Image.fromarray(rng.integers(0, 255, (128, 128, 3), dtype=np.uint8))
    blurred = sharp.resize((16, 16), Image.BILINEAR).resize((128, 128), Image.BILINEAR)
    stats = pixel_statistics(np.stack([np.asarray(sharp), np.asarray(blurred)]).astype(np.float32)).numpy()
    assert stats.shape == (2, len(PIXEL_COLUMNS))
    sharpness = PIXEL_COLUMNS.index("sharpness")
    assert stats[0, sharpness] > 10 * stats[1, sharpness]
    rows = statistics_rows(stats, [(128, 128), (300, 150)])
    assert [r["aspect"] for r in rows] == [1.0, 2.0] and rows[1]["sharpness"] == pytest.approx(stats[1, sharpness])
    with pytest.raises(ValueError, match="2 rows of pixel statistics for 1 image sizes"):
        statistics_rows(stats, [(1, 1)])


def test_undecodable_bytes_raise():
    with pytest.raises(Exception):  # noqa: B017 - PIL's UnidentifiedImageError; the callers count and list it
        statistics_from_bytes(b"not an image", 32)
