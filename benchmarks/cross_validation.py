"""Single model against the k-fold cross-validated ensemble, side by side, on real ISIC 2019 images.

Ingests, merges and splits a folder in the Kaggle layout (default: the shared isic2019-sample) once, with folds, so
both arms see the same test split and seed. Prints:
- the single model (trained on train, early-stopped on val): test BMA and wall time;
- k fold models (each trained on k-1 folds of train+val, early-stopped on its own fold): per-fold BMA, mean ± std,
  out-of-fold (OOF) BMA, then their ensemble (weights/temperatures chosen on OOF): test BMA and wall time.
The test split is read only by the two final evaluations. On a few hundred images the figures are noisy (a handful
of test images per rare class).

    python benchmarks/cross_validation.py [--source ../shared/data/isic2019-sample] [--folds 5] [--backbone simple_cnn]
                                          [--image-size 64] [--epochs 10] [--weighting uniform] [--temperature]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DEFAULT_SOURCE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "isic2019-sample"


def _test_bma(model, raw: Path, test, image_size: int) -> float:
    from dermpipe import config
    from dermpipe.model.evaluation.evaluate import predict_table
    from dermpipe.model.evaluation.metrics import evaluate_predictions

    probabilities = predict_table(model, test, raw, image_size)
    return evaluate_predictions(test["label_index"].to_numpy(), probabilities, config.CLASSES).balanced_accuracy


def cross_validated(raw: Path, splits, params, folds: int, weighting: str, temperature: bool):
    """(CV summary, ensemble, seconds): k fold models, their OOF predictions, the ensemble chosen on them."""
    from dermpipe.model.ensemble import build_ensemble
    from dermpipe.model.evaluation.evaluate import predict_table
    from dermpipe.model.evaluation.oof import choose_combination, combine, summarise
    from dermpipe.model.training.loop import train_model
    from dermpipe.model.training.train_fold import fold_pool, fold_tables, oof_frame

    started = time.perf_counter()
    members, frames = [], []
    for fold in range(folds):
        fit, held = fold_tables(splits.train, splits.val, fold)
        model, _ = train_model(fit, held, raw, params, quiet=True)
        members.append(model)
        frames.append(oof_frame(held, predict_table(model, held, raw, params.image_size), fold))
        print(f"fold {fold}: {len(fit)} train / {len(held)} held out", flush=True)
    oof = combine(frames, fold_pool(splits.train, splits.val))
    weights, temperatures = choose_combination(oof, weighting, temperature)
    ensemble = build_ensemble(members, weights=weights, temperatures=temperatures)
    return summarise(oof), ensemble, time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    from dermpipe.model.training.train import TrainParams

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--backbone", default="simple_cnn")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--weighting", default="uniform", choices=("uniform", "fold_bma"))
    parser.add_argument("--temperature", action="store_true")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")  # tiny folds
    if not args.source.exists():
        raise SystemExit(f"{args.source} not found: pass --source, a folder or zip in the Kaggle ISIC 2019 layout")
    from dermpipe.data.ingest import ingest_source
    from dermpipe.data.merge import merge_dataset
    from dermpipe.data.split import split_table
    from dermpipe.model.training.loop import train_model

    params = TrainParams(backbone=args.backbone, image_size=args.image_size, epochs=args.epochs, patience=3,
                         batch_size=32, seed=args.seed, cache="memory")
    with tempfile.TemporaryDirectory(prefix="dermpipe-cv-bench-") as tmp:
        raw = Path(tmp) / "raw"
        ingest_source(str(args.source), raw)
        splits = split_table(merge_dataset(raw).table, seed=args.seed, folds=args.folds,
                             method="stratified")  # the split the figures of docs/stages/training.md were measured on
        started = time.perf_counter()
        single, _ = train_model(splits.train, splits.val, raw, params, quiet=True)
        single_seconds = time.perf_counter() - started
        single_bma = _test_bma(single, raw, splits.test, args.image_size)
        summary, ensemble, cv_seconds = cross_validated(raw, splits, params, args.folds, args.weighting,
                                                        args.temperature)
        ensemble_bma = _test_bma(ensemble, raw, splits.test, args.image_size)
    print(f"\n{args.source.name}: {len(splits.train)} train / {len(splits.val)} val / {len(splits.test)} test, "
          f"{args.backbone} {args.image_size} px, {args.epochs} epochs (patience 3), seed {args.seed}, "
          f"{args.folds} folds, weighting {args.weighting}{', temperature' if args.temperature else ''}")
    print(f"{'':28}{'test BMA':>10}{'wall s':>9}")
    print(f"{'single model':28}{single_bma:>10.3f}{single_seconds:>9.0f}")
    print(f"{f'{args.folds}-fold CV BMA (mean ± std)':28}{summary.mean:>6.3f} ± {summary.std:.3f}")
    print(f"{'OOF BMA':28}{summary.oof_balanced_accuracy:>10.3f}   ({summary.oof_rows} images)")
    print(f"{f'{args.folds}-fold ensemble':28}{ensemble_bma:>10.3f}{cv_seconds:>9.0f}")
    print("per fold: " + ", ".join(f"{f}: {v:.3f}" for f, v in summary.per_fold.items()))


if __name__ == "__main__":
    main()
