"""The train-fold stage, one cross-validation fold: train on k-1 folds of the train+val pool, validate on fold i,
predict it out of fold. Its parameters are train's (TrainParams, with the sweep configuration's overrides).

The split (dermpipe.data.split with folds=k) gives every train and val row a `fold` in 0..k-1 and every test row -1.
Cross-validation pools train and val and re-divides the pool by fold: fold i's rows are the held-out fold, the rest
train. The held-out fold drives early stopping (it is the `val` of train_model) and is predicted once more at the
end; those out-of-fold (OOF) predictions are what dermpipe.model.evaluation.oof scores and what the ensemble's
weights and temperatures are chosen on. The test split is never read here.

Fold tasks read the image files, not the prepare stage's TFRecord shards: the shards are cut per split (train / val),
not per fold.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from kfp.dsl import Dataset, Metrics, Model

from dermpipe.model.evaluation.oof import VALIDATION_FOLD
from dermpipe.model.training.fold_plan import DEFAULT_CONFIG, iteration_task
from dermpipe.model.training.train import TrainParams

FOLD_COLUMN = "fold"
CONFIG_COLUMN = "config"


def fold_pool(train: pd.DataFrame, val: pd.DataFrame) -> pd.DataFrame:
    """The train and val rows together (the rows cross-validation divides), checked to carry a fold each."""
    pool = pd.concat([train, val], ignore_index=True)
    if FOLD_COLUMN not in pool.columns:
        raise ValueError("cross-validation: the split tables have no `fold` column; run split with folds=k (k >= 2)")
    if (pool[FOLD_COLUMN] < 0).any():
        raise ValueError(f"cross-validation: {int((pool[FOLD_COLUMN] < 0).sum())} train/val rows have fold -1; "
                         "expected a fold in 0..k-1 for every train and val row (fold -1 is the test split's)")
    return pool


def fold_count(train: pd.DataFrame, val: pd.DataFrame) -> int:
    """k: the number of folds the split assigned (0: none, the split ran with folds=0)."""
    if FOLD_COLUMN not in train.columns and FOLD_COLUMN not in val.columns:
        return 0
    return int(fold_pool(train, val)[FOLD_COLUMN].max()) + 1


def scored_rows(train: pd.DataFrame, val: pd.DataFrame) -> pd.DataFrame:
    """The rows each configuration's held-out predictions must cover: train+val with folds, val without."""
    return fold_pool(train, val) if fold_count(train, val) else val


def fold_tables(train: pd.DataFrame, val: pd.DataFrame, fold: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rows to train on: every other fold, rows to validate and predict: fold `fold`); VALIDATION_FOLD: (train,
    val)."""
    if fold == VALIDATION_FOLD:
        return train.reset_index(drop=True), val.reset_index(drop=True)
    pool = fold_pool(train, val)
    k = int(pool[FOLD_COLUMN].max()) + 1
    if not 0 <= fold < k:
        raise ValueError(f"cross-validation: fold={fold}, expected 0..{k - 1} (the split assigned {k} folds)")
    held = pool[FOLD_COLUMN] == fold
    return pool[~held].reset_index(drop=True), pool[held].reset_index(drop=True)


def oof_frame(held: pd.DataFrame, probabilities: np.ndarray, fold: int, config: str = DEFAULT_CONFIG) -> pd.DataFrame:
    """The held-out fold's predictions in evaluate's format (predictions_frame) plus the fold and configuration."""
    from dermpipe.model.evaluation.evaluate import predictions_frame

    if len(held) != len(probabilities):
        raise ValueError(f"fold {fold}: {len(probabilities)} predictions for {len(held)} held-out rows")
    return predictions_frame(held, probabilities).assign(**{FOLD_COLUMN: fold, CONFIG_COLUMN: config})


def run(raw: Dataset, train: Dataset, val: Dataset, model: Model, predictions: Dataset, stats: Metrics,
        params: TrainParams, iteration: int, sweep: str = "") -> None:
    """The train-fold stage: iteration `iteration`'s (configuration, fold) model.keras, OOF predictions and Metrics;
    the configuration's overrides replace `params`' fields."""
    from dataclasses import replace

    import tensorflow as tf

    from dermpipe.lineage.artifacts import annotate, log_metrics
    from dermpipe.model.evaluation.evaluate import predict_table
    from dermpipe.model.training.callbacks import checkpoint_location
    from dermpipe.model.training.loop import train_model
    from dermpipe.model.training.report import stage_metrics

    train_table, val_table = pd.read_parquet(train.path), pd.read_parquet(val.path)
    config, fold = iteration_task(sweep, iteration, fold_count(train_table, val_table))
    params = replace(params, **{k: v for k, v in config.items() if k != "name"})
    fit, held = fold_tables(train_table, val_table, fold)
    out = Path(model.path)
    out.mkdir(parents=True, exist_ok=True)
    checkpoints = checkpoint_location(model.path, model.uri)
    trained, report = train_model(fit, held, Path(raw.path), params, out_dir=out, checkpoint_dir=checkpoints,
                                  quiet=params.quiet)
    trained.save(out / "model.keras")
    report.update(fold=fold, config=config)
    (out / "training.json").write_text(json.dumps(report, indent=1))
    if tf.io.gfile.exists(checkpoints):
        tf.io.gfile.rmtree(checkpoints)
    oof = oof_frame(held, predict_table(trained, held, Path(raw.path), params.image_size), fold, config["name"])
    Path(predictions.path).parent.mkdir(parents=True, exist_ok=True)
    oof.to_parquet(predictions.path, index=False)
    annotate(model, {"framework": "keras", "file": "model.keras", "fold": fold, "config": config,
                     "train_rows": len(fit), "fold_rows": len(held), "epochs_run": report["epochs_run"],
                     **{f"val_{k}": round(v, 4) for k, v in report["validation"].items()}})
    annotate(predictions, {"fold": fold, "config": config["name"], "rows": len(oof), "format": "parquet",
                           "model_uri": model.uri})
    log_metrics(stats, {"fold": fold, "iteration": iteration, **stage_metrics(report)})
