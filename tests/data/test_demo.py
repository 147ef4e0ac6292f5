import numpy as np
import pandas as pd
from PIL import Image

from dermpipe.config import CLASSES, GROUND_TRUTH_COLUMNS, METADATA_COLUMNS, SEXES, SITES
from dermpipe.data.sources.demo import DemoSpec, class_counts, demo_tables, draw_lesion, write_demo_dataset


def test_class_counts_sum_and_skew():
    counts = class_counts(400)
    assert sum(counts.values()) == 400
    assert max(counts, key=counts.get) == "NV"
    assert min(counts.values()) >= 30


def test_tables_follow_isic_schema_and_vocabulary():
    truth, meta, _ = demo_tables(DemoSpec(n_images=200))
    assert tuple(truth.columns) == GROUND_TRUTH_COLUMNS
    assert tuple(meta.columns) == METADATA_COLUMNS
    labels = truth[list(GROUND_TRUTH_COLUMNS[1:])]
    assert set(np.unique(labels.to_numpy())) == {0.0, 1.0}
    assert (labels.sum(axis=1) == 1.0).all()
    assert (truth["UNK"] == 0.0).all()
    assert set(meta["sex"].dropna()) <= set(SEXES)
    assert set(meta["anatom_site_general"].dropna()) <= set(SITES)
    assert meta[["age_approx", "sex", "anatom_site_general", "lesion_id"]].isna().any().all()  # some missing each
    per_lesion = meta["lesion_id"].value_counts()
    assert (per_lesion > 1).sum() >= 10  # several images per lesion


def test_generation_is_deterministic(tmp_path):
    a = write_demo_dataset(tmp_path / "a", DemoSpec(n_images=24, image_size=32))
    b = write_demo_dataset(tmp_path / "b", DemoSpec(n_images=24, image_size=32))
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files_a == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files_a)
    truth = pd.read_csv(a / "ISIC_2019_Training_GroundTruth.csv")
    assert truth.iloc[0, 1:].map(lambda v: f"{v:.1f}").isin(["0.0", "1.0"]).all()
    with Image.open(next((a / "ISIC_2019_Training_Input" / "ISIC_2019_Training_Input").glob("*.jpg"))) as im:
        assert im.format == "JPEG" and im.mode == "RGB" and im.size == (32, 32)


def test_classes_differ_visually():
    """The class signal is learnable: the mean lesion colour differs between classes far more than within."""
    rng = np.random.default_rng(0)
    means = {c: [draw_lesion(c, 64, rng, lesion_seed=s)[24:40, 24:40].mean(axis=(0, 1)) for s in range(4)]
             for c in CLASSES}
    within = np.mean([np.std(v, axis=0).mean() for v in means.values()])
    centres = np.array([np.mean(v, axis=0) for v in means.values()])
    between = np.std(centres, axis=0).mean()
    assert between > 2 * within
