import io

import numpy as np
import pytest
from PIL import Image

from dermpipe.imagestats import STAT_COLUMNS, image_statistics, statistics_from_bytes


def test_known_colours():
    red = image_statistics(Image.new("RGB", (40, 20), (255, 0, 0)))
    assert set(red) == set(STAT_COLUMNS)
    assert red["hue_x"] == pytest.approx(1.0) and red["hue_y"] == pytest.approx(0.0, abs=1e-6)
    assert red["saturation"] == pytest.approx(1.0) and red["contrast"] == pytest.approx(0.0, abs=1e-6)
    assert (red["width"], red["height"], red["aspect"]) == (40.0, 20.0, 2.0)
    grey = image_statistics(Image.new("L", (10, 10), 128))
    assert grey["saturation"] == 0.0 and grey["brightness"] == pytest.approx(128 / 255, abs=1e-3)


def test_statistics_do_not_depend_on_resolution():
    rng = np.random.default_rng(0)
    base = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).resize((1024, 1024), Image.BILINEAR)
    large, small = image_statistics(base), image_statistics(base.resize((256, 256), Image.BILINEAR))
    for column in ("brightness", "contrast", "saturation", "hue_x", "hue_y"):
        assert large[column] == pytest.approx(small[column], abs=0.02), column
    assert large["width"] == 1024 and small["width"] == 256


def test_from_bytes_and_sharpness_orders_blur():
    rng = np.random.default_rng(1)
    sharp = Image.fromarray(rng.integers(0, 255, (128, 128, 3), dtype=np.uint8))
    blurred = sharp.resize((16, 16), Image.BILINEAR).resize((128, 128), Image.BILINEAR)
    buffer = io.BytesIO()
    sharp.save(buffer, format="PNG")
    assert statistics_from_bytes(buffer.getvalue()) == image_statistics(sharp)
    assert image_statistics(sharp)["sharpness"] > 10 * image_statistics(blurred)["sharpness"]
