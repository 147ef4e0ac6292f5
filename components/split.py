"""split: train/val/test, stratified by label and grouped so one lesion (or one exact duplicate) never spans splits.

Defaults are the seed notebook's: test 10 %, then validation 10 % of the rest, seed 42. Groups are the union of
`lesion_id` and image content hash (images without lesion_id are their own group unless they duplicate another).
Ratios are met to the nearest 1/k with k-fold StratifiedGroupKFold, the well-tested way to do both at once.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd
from kfp.dsl import Dataset, Input, Metrics, Output

from dermpipe import config
from dermpipe.componentkit import stage_component


@dataclass
class Splits:
    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame


def leakage_groups(table: pd.DataFrame) -> np.ndarray:
    """Group id per row: rows sharing a lesion_id or an identical sha256 are one group (union-find)."""
    parent = list(range(len(table)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for column in ("lesion_id", "sha256"):
        if column not in table:
            continue
        first: dict[str, int] = {}
        for i, key in enumerate(table[column].tolist()):
            if key is None or (isinstance(key, float) and np.isnan(key)) or key == "":
                continue
            if key in first:
                parent[find(i)] = find(first[key])
            else:
                first[key] = i
    return np.array([find(i) for i in range(len(table))])


def _holdout(labels: np.ndarray, groups: np.ndarray, size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(keep, holdout) row positions: one fold of a stratified group k-fold with k = round(1/size)."""
    from sklearn.model_selection import StratifiedGroupKFold

    if not 0.0 < size < 0.5:
        raise ValueError(f"split size {size} is out of range; expected a fraction in (0, 0.5)")
    n_splits = max(2, round(1.0 / size))
    n_groups = len(np.unique(groups))
    if n_groups < n_splits:
        raise ValueError(f"only {n_groups} lesion groups: too few to hold out {size:.0%} (need at least {n_splits})")
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    keep, holdout = next(splitter.split(np.zeros(len(labels)), labels, groups))
    return keep, holdout


def split_table(table: pd.DataFrame, *, test_size: float = 0.1, val_size: float = 0.1, seed: int = 42) -> Splits:
    """Leakage-free stratified train/val/test split of the merged table."""
    table = table.reset_index(drop=True)
    groups = leakage_groups(table)
    labels = table["label"].to_numpy()
    rest, test = _holdout(labels, groups, test_size, seed)
    train, val = _holdout(labels[rest], groups[rest], val_size, seed)
    return Splits(
        train=table.iloc[rest[train]].reset_index(drop=True),
        val=table.iloc[rest[val]].reset_index(drop=True),
        test=table.iloc[test].reset_index(drop=True),
    )


def split_summary(splits: Splits) -> dict[str, float]:
    total = sum(len(part) for part in (splits.train, splits.val, splits.test))
    summary: dict[str, float] = {}
    for name in ("train", "val", "test"):
        part = getattr(splits, name)
        summary[f"{name}_rows"] = len(part)
        summary[f"{name}_fraction"] = round(len(part) / total, 4)
        summary[f"{name}_lesions"] = int(part["lesion_id"].nunique())
    return summary


def run(merged: Dataset, train: Dataset, val: Dataset, test: Dataset, stats: Metrics,
        test_size: float, val_size: float, seed: int) -> None:
    from dermpipe.lineage import annotate, log_metrics

    table = pd.read_parquet(merged.path)
    splits = split_table(table, test_size=test_size, val_size=val_size, seed=seed)
    for name, artifact in (("train", train), ("val", val), ("test", test)):
        part = getattr(splits, name)
        part.to_parquet(artifact.path, index=False)
        annotate(artifact, {
            "split": name, "rows": len(part), "format": "parquet",
            "dataset_uri": merged.metadata.get("dataset_uri", ""),
            "class_counts": {c: int((part["label"] == c).sum()) for c in config.CLASSES},
            "params": {"test_size": test_size, "val_size": val_size, "seed": seed},
        })
    log_metrics(stats, split_summary(splits))


@stage_component()
def split(merged: Input[Dataset], train: Output[Dataset], val: Output[Dataset], test: Output[Dataset],
          stats: Output[Metrics], test_size: float = 0.1, val_size: float = 0.1, seed: int = 42):
    """Stratified, lesion-grouped, duplicate-aware train/val/test split."""
    from dermpipe.components.split import run

    run(merged, train, val, test, stats, test_size=test_size, val_size=val_size, seed=seed)
