"""Metadata fusion against the image-only model, side by side in one run, on real ISIC 2019 images.

Ingests, merges and splits a folder in the Kaggle layout (default: the shared isic2019-sample, 475 real images),
then trains the image-only classifier and the metadata-fusion classifier with the same parameters, seed and splits,
and prints for each: validation and test balanced accuracy (BMA, the ISIC metric; test from evaluate's
predict_table, as the pipeline scores it), training images/second; then the differences and the throughput ratio.
On a few hundred images the BMA figures are noisy (a few test images per rare class): read them as "the option
works end to end on real data", not as the ISIC leaderboard's gain.

    python benchmarks/metadata_fusion.py [--source ../shared/data/isic2019-sample] [--backbone simple_cnn]
                                         [--image-size 64] [--epochs 10] [--seeds 1]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DEFAULT_SOURCE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "isic2019-sample"


def splits_of(source: Path, work: Path, seed: int):
    from dermpipe.data.ingest import ingest_source
    from dermpipe.data.merge import merge_dataset
    from dermpipe.data.split import split_table

    raw = work / "raw"
    if not raw.exists():
        ingest_source(str(source), raw)
    merged = merge_dataset(raw).table
    # the split the figures of docs/stages/training.md (Metadata fusion) were measured on
    return raw, split_table(merged, test_size=0.15, val_size=0.15, seed=seed, method="stratified")


def train_and_score(raw: Path, splits, *, fusion: bool, backbone: str, image_size: int, epochs: int,
                    seed: int) -> dict[str, float]:
    from dermpipe import config
    from dermpipe.model.evaluation.evaluate import predict_table
    from dermpipe.model.evaluation.metrics import evaluate_predictions
    from dermpipe.model.training.loop import train_model
    from dermpipe.model.training.train import TrainParams

    params = TrainParams(backbone=backbone, image_size=image_size, epochs=epochs, patience=epochs, batch_size=32,
                         seed=seed, metadata_fusion=fusion, cache="memory")
    model, report = train_model(splits.train, splits.val, raw, params, quiet=True)
    probabilities = predict_table(model, splits.test, raw, image_size)
    test = evaluate_predictions(splits.test["label_index"].to_numpy(), probabilities, config.CLASSES)
    history = list(report["history"].values())[-1]
    rates = history.get("images_per_second", [0.0])
    return {"val_bma": report["validation"]["balanced_accuracy"], "test_bma": test.balanced_accuracy,
            "img_per_s": sum(rates[1:]) / max(1, len(rates) - 1) if len(rates) > 1 else rates[0]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--backbone", default="simple_cnn")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=1, help="repeat with seeds 0..n-1 (splits and training)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")  # tiny test split
    if not args.source.exists():
        raise SystemExit(f"{args.source} not found: pass --source, a folder or zip in the Kaggle ISIC 2019 layout")
    rows = []
    with tempfile.TemporaryDirectory(prefix="dermpipe-fusion-bench-") as tmp:
        for seed in range(args.seeds):
            raw, splits = splits_of(args.source, Path(tmp), seed)
            for fusion in (False, True):
                scores = train_and_score(raw, splits, fusion=fusion, backbone=args.backbone,
                                         image_size=args.image_size, epochs=args.epochs, seed=seed)
                rows.append((seed, fusion, scores))
                print(f"seed {seed} {'fusion    ' if fusion else 'image-only'} val BMA {scores['val_bma']:.3f} "
                      f"test BMA {scores['test_bma']:.3f} {scores['img_per_s']:.0f} img/s", flush=True)
    print(f"\n{args.source.name}: {len(splits.train)} train / {len(splits.val)} val / {len(splits.test)} test images, "
          f"{args.backbone} at {args.image_size} px, {args.epochs} epochs, {args.seeds} seed(s)")
    for key, label in (("val_bma", "validation BMA"), ("test_bma", "test BMA"), ("img_per_s", "train img/s")):
        plain = sum(s[key] for _, f, s in rows if not f) / args.seeds
        fused = sum(s[key] for _, f, s in rows if f) / args.seeds
        ratio = f"ratio {fused / plain:.2f}" if plain else "ratio n/a"
        print(f"{label:>15}: image-only {plain:.3f}  fusion {fused:.3f}  difference {fused - plain:+.3f}  {ratio}")


if __name__ == "__main__":
    main()
