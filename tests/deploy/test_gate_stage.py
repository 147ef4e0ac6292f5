"""The gate stage's inputs: the image-statistics baseline joined on the profile's image keys."""

import numpy as np
import pandas as pd

from dermpipe.data.image_stats import STAT_COLUMNS
from dermpipe.deploy.gate.challenge import baseline_predictions
from dermpipe.model.profile.reference import PROFILE_FILE


def _tables(n: int, suffix: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(0)
    labels = np.arange(n) % 2
    stats = rng.normal(size=(n, len(STAT_COLUMNS))) + labels[:, None] * 3.0  # brightness etc. tell the classes apart
    keys = [f"ISIC_{i:07d}" for i in range(n)]
    profile = pd.DataFrame(stats, columns=list(STAT_COLUMNS)).assign(image=keys)
    split = pd.DataFrame({"image": [k + suffix for k in keys], "label_index": labels})
    return profile, split.iloc[: n // 2], split.iloc[n // 2:]


def test_the_baseline_joins_the_profile_on_image_keys_of_downsampled_names(tmp_path):
    profile, train, test = _tables(80, "_downsampled")  # ISIC 2019's real file names; the profile keys drop it
    profile.to_parquet(tmp_path / PROFILE_FILE)
    predicted, note = baseline_predictions(tmp_path, train, test)
    assert predicted is not None and note.startswith("baseline: logistic regression on 9 image statistics, 40 train")
    assert (predicted == test["label_index"].to_numpy()).mean() > 0.9


def test_missing_profile_rows_are_named_not_guessed(tmp_path):
    profile, train, test = _tables(20, "")
    profile.iloc[:-2].to_parquet(tmp_path / PROFILE_FILE)
    predicted, note = baseline_predictions(tmp_path, train, test)
    assert predicted is None
    assert note == "baseline not fitted: images missing from the profile: test 2 (e.g. ISIC_0000018, ISIC_0000019)"
    assert baseline_predictions(None, train, test)[0] is None
