"""The `demo` source: a deterministic, ISIC-2019-format data set with a learnable visual signal per class.

Each diagnosis gets its own lesion colour and pattern (uniform, ring, streaks, dots, two-tone, ...) drawn on a varied
skin tone, so a small CNN separates the classes in a few epochs on a CPU. Several images share a lesion_id (the same
lesion photographed again, slightly moved and rotated), some rows have no lesion_id and some metadata is missing,
as in the real CSVs. Class frequencies are skewed towards NV like ISIC 2019.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dermpipe.config import (
    AGES,
    GROUND_TRUTH_COLUMNS,
    GROUND_TRUTH_CSV,
    IMAGE_SUBDIR,
    METADATA_CSV,
    SEXES,
    SITES,
)
from dermpipe.data.sources.kind import Fetched, FetchRequest, SourceKind

if TYPE_CHECKING:  # numpy, pandas and PIL are imported where images are drawn: the pre-flight imports this module
    import numpy as np
    import pandas as pd

# Relative class frequencies (NV-heavy like ISIC 2019, but every class well represented so the demo learns).
DEMO_WEIGHTS: dict[str, float] = {
    "MEL": 1.5, "NV": 3.0, "BCC": 1.2, "AK": 1.0, "BKL": 1.0, "DF": 0.8, "VASC": 0.8, "SCC": 0.8,
}
# RGB lesion colour and pattern per class: the learnable signal.
_LOOK: dict[str, tuple[tuple[int, int, int], str]] = {
    "MEL": ((40, 25, 20), "two_tone"),
    "NV": ((120, 75, 45), "uniform"),
    "BCC": ((215, 140, 150), "streaks"),
    "AK": ((190, 60, 55), "dots"),
    "BKL": ((165, 120, 75), "dots"),
    "DF": ((110, 70, 50), "ring"),
    "VASC": ((120, 20, 70), "uniform"),
    "SCC": ((230, 200, 180), "ring"),
}


@dataclass(frozen=True)
class DemoSpec:
    n_images: int = 400
    image_size: int = 128
    seed: int = 2019


def class_counts(n_images: int) -> dict[str, int]:
    """Split n_images over the classes by DEMO_WEIGHTS (largest remainder, deterministic)."""
    total = sum(DEMO_WEIGHTS.values())
    raw = {c: n_images * w / total for c, w in DEMO_WEIGHTS.items()}
    counts = {c: int(v) for c, v in raw.items()}
    for c in sorted(raw, key=lambda c: raw[c] - counts[c], reverse=True)[: n_images - sum(counts.values())]:
        counts[c] += 1
    return counts


def draw_lesion(label: str, size: int, rng: np.random.Generator, *, lesion_seed: int) -> np.ndarray:
    """One RGB uint8 image of a lesion of class `label`; the same lesion_seed draws the same lesion again."""
    import numpy as np

    lesion_rng = np.random.default_rng(lesion_seed)
    colour, pattern = _LOOK[label]
    skin = np.array([225, 180, 150]) + lesion_rng.normal(0, 12, 3)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    img = np.ones((size, size, 3), np.float32) * skin
    img += rng.normal(0, 6, (size, size, 3))  # sensor noise differs per photograph
    # Lesion geometry: fixed per lesion, nudged per photograph.
    cy, cx = 0.5 + lesion_rng.uniform(-0.08, 0.08, 2) + rng.uniform(-0.04, 0.04, 2)
    ry, rx = lesion_rng.uniform(0.2, 0.32, 2)
    angle = lesion_rng.uniform(0, np.pi) + rng.uniform(-0.3, 0.3)
    dy, dx = yy - cy, xx - cx
    u = (dx * np.cos(angle) + dy * np.sin(angle)) / rx
    v = (-dx * np.sin(angle) + dy * np.cos(angle)) / ry
    r = np.sqrt(u**2 + v**2)
    inside = r < 1.0
    tone = np.array(colour, np.float32) + lesion_rng.normal(0, 10, 3)
    lesion = np.broadcast_to(tone, img.shape).copy()
    if pattern == "two_tone":
        lesion[u > 0.1 * np.sin(7 * v)] = tone * 0.4 + np.array([60, 60, 90])
    elif pattern == "ring":
        lesion[r < 0.5] = np.array([245, 235, 225])
    elif pattern == "streaks":
        lesion[np.sin(18 * (u + 0.3 * v)) > 0.6] = np.array([170, 30, 40])
    elif pattern == "dots":
        dots = np.sin(25 * u) * np.sin(25 * v) > 0.55
        lesion[dots] = tone * 0.45
    alpha = np.clip((1.0 - r) * 6, 0, 1)[..., None] * inside[..., None]
    img = img * (1 - alpha) + lesion * alpha
    return np.clip(img, 0, 255).astype(np.uint8)


def demo_tables(spec: DemoSpec) -> tuple[pd.DataFrame, pd.DataFrame, list[tuple[str, str, int]]]:
    """Ground truth and metadata tables in the exact ISIC 2019 CSV schemas, plus (image, label, lesion_seed) rows."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(spec.seed)
    rows: list[tuple[str, str, int]] = []
    metadata: list[dict[str, object]] = []
    image_number = 0
    lesion_number = 0
    for label, count in class_counts(spec.n_images).items():
        made = 0
        while made < count:
            lesion_number += 1
            photos = int(min(count - made, rng.choice([1, 1, 2, 3, 4])))
            has_lesion_id = rng.random() > 0.15  # like ISIC 2017 images, some rows have no lesion_id
            lesion_id = f"DEMO_{lesion_number:07d}" if has_lesion_id else None
            age = None if rng.random() < 0.05 else int(rng.choice(AGES[4:]))
            sex = None if rng.random() < 0.03 else str(rng.choice(SEXES))
            site = None if rng.random() < 0.1 else str(rng.choice(SITES[:6]))
            for _ in range(photos):
                image = f"ISIC_{9000000 + image_number:07d}"
                image_number += 1
                rows.append((image, label, spec.seed * 100_000 + lesion_number))
                metadata.append(
                    {"image": image, "age_approx": age, "anatom_site_general": site, "lesion_id": lesion_id, "sex": sex}
                )
            made += photos
    truth = pd.DataFrame(
        [{"image": img, **{c: float(c == label) for c in GROUND_TRUTH_COLUMNS[1:]}} for img, label, _ in rows]
    )
    meta = pd.DataFrame(metadata)
    meta["age_approx"] = meta["age_approx"].astype("Int64")
    return truth, meta, rows


def write_demo_dataset(out_dir: Path, spec: DemoSpec = DemoSpec()) -> Path:
    """Write the demo data set in the Kaggle `andrewmvd/isic-2019` layout under out_dir; returns out_dir."""
    import numpy as np
    from PIL import Image

    out_dir = Path(out_dir)
    image_dir = out_dir / IMAGE_SUBDIR
    image_dir.mkdir(parents=True, exist_ok=True)
    truth, meta, rows = demo_tables(spec)
    rng = np.random.default_rng(spec.seed + 1)
    for image, label, lesion_seed in rows:
        pixels = draw_lesion(label, spec.image_size, rng, lesion_seed=lesion_seed)
        Image.fromarray(pixels).save(image_dir / f"{image}.jpg", quality=90)
    truth.to_csv(out_dir / GROUND_TRUTH_CSV, index=False, float_format="%.1f")
    meta.to_csv(out_dir / METADATA_CSV, index=False)
    return out_dir


def fetch_demo(location: str, request: FetchRequest) -> Fetched:
    """The demo data set (request.demo_images images) drawn into the scratch folder."""
    return Fetched(write_demo_dataset(request.scratch, DemoSpec(n_images=request.demo_images)), scratch=True)


KIND = SourceKind(name="demo", form="'demo'", claim=lambda text: "" if text == "demo" else None, fetch=fetch_demo)
