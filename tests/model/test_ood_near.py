"""The run-time near-OOD set (val images through a simulated new device) and the lesion-grouped study splits."""

import numpy as np
from PIL import Image

from dermpipe.model.profile.ood_near import device_shift, write_near_set
from dermpipe.model.profile.ood_study import grouped_split


def _lesion(size: int = 96) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size]
    skin = np.stack([np.full((size, size), c) for c in (200.0, 160.0, 140.0)], axis=2)
    spot = np.hypot(y - size / 2, x - size / 2) < size / 4
    skin[spot] = (90.0, 60.0, 40.0)
    return skin.astype(np.uint8)


def test_a_new_device_changes_colour_focus_framing_and_keeps_the_image():
    image = _lesion()
    shifted = [device_shift(image, np.random.default_rng(seed)) for seed in range(20)]
    assert all(s.shape == image.shape and s.dtype == np.uint8 for s in shifted)
    np.testing.assert_array_equal(device_shift(image, np.random.default_rng(3)), shifted[3])  # seeded
    difference = [np.abs(s.astype(float) - image).mean() for s in shifted]
    assert min(difference) > 2 and max(difference) < 80  # changed, not destroyed
    assert max(difference) > 2 * min(difference)  # strengths vary from mild to strong
    spot = [float((s.astype(float).sum(axis=2) < 300).mean()) for s in shifted]
    assert np.mean(spot) > float((image.astype(float).sum(axis=2) < 300).mean())  # magnified: the lesion grows
    corner = [s[:8, :8].astype(float).mean() for s in shifted]
    centre_skin = [s[48, 10].astype(float).mean() for s in shifted]
    assert np.mean(corner) < np.mean(centre_skin)  # vignetting darkens the corners


def test_the_near_set_is_one_jpeg_per_image(tmp_path):
    sources = []
    for i in range(3):
        path = tmp_path / f"src{i}.png"
        Image.fromarray(_lesion(64)).save(path)
        sources.append(path)
    written = write_near_set(sources, tmp_path / "near", seed=1)
    assert [p.name for p in written] == ["00000_src0.jpg", "00001_src1.jpg", "00002_src2.jpg"]
    assert all(Image.open(p).size == (64, 64) for p in written)


def test_grouped_split_keeps_each_lesion_in_one_part():
    groups = np.array([f"L{i // 3}" for i in range(90)] + [f"solo{i}" for i in range(30)])  # 30 lesions x 3 + 30
    parts = grouped_split(groups, (0.6, 0.2), seed=0)
    assert sorted(np.concatenate(parts).tolist()) == list(range(120))
    owners = [set(groups[p]) for p in parts]
    assert not (owners[0] & owners[1] or owners[0] & owners[2] or owners[1] & owners[2])
    assert [abs(len(p) - n) <= 3 for p, n in zip(parts, (72, 24, 24), strict=True)] == [True] * 3
