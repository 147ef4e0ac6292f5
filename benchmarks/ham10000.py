"""DermaMNIST on the real HAM10000 kit: dermpipe's pipeline (kfp.local) beside the published DermaMNIST figures.

Runs the training pipeline as `dermpipe run` does (the laptop profile, or --profile) on ../shared/data/ham10000
twice per seed:
- **dermamnist**: the official DermaMNIST split (`split_method=file` on the kit's `dermamnist_split.csv`). The kit
  holds DermaMNIST's train and val images only, so split's rule applies: DermaMNIST val (998 images) is the test
  split, val is carved from DermaMNIST train by lesion. The published figures are on DermaMNIST *test* (2,005
  images, not in the kit): same population and split procedure, not the same images.
- **lesion-grouped**: dermpipe's own split (hash, lesion-grouped, 10 % test): no lesion in two splits, so harder
  than DermaMNIST's by-image split, where 346 of the 998 val images have a lesion in train.
Scores on each run's test split: ACC and mean one-vs-rest AUC over the seven DermaMNIST classes, as MedMNIST's
evaluator computes them (medmnist/evaluator.py getACC/getAUC: argmax accuracy; the mean over classes of the binary
AUC of class i against the rest), with ISIC 2019's AK and SCC merged into akiec (their probabilities summed); BMA
(mean recall) and per-class recall over the ISIC 2019 classes; the pipeline's wall time. Mean ± sd over the seeds
(sample sd). A majority-class row (always nv) on the same images is the floor.

    python benchmarks/ham10000.py [--kit ../shared/data/ham10000] [--seeds 42 43 44] [--epochs N] [--quick]
                                  [--profile laptop_resnet]
                                  [--home DIR] [--arms dermamnist lesion-grouped]

--quick: one seed and 2 epochs (checks the benchmark end to end; not a result). Runs go to --home (default a new
temporary folder: its own run records, pipeline root and one registry per run, so no run gates against another).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

KIT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ham10000"
# MedMNIST's DermaMNIST label order (0..6), and where each ISIC 2019 class goes (AK and SCC: HAM10000's akiec).
DERMAMNIST_CLASSES = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
TO_DERMAMNIST = {"MEL": "mel", "NV": "nv", "BCC": "bcc", "AK": "akiec", "BKL": "bkl", "DF": "df", "VASC": "vasc",
                 "SCC": "akiec"}
# Published DermaMNIST figures on its test split (the kit's README): (model, resolution, ACC, AUC or None).
PUBLISHED = (
    ("MedMNIST v2 ResNet-18 (scratch)", "28 px", 0.735, 0.917),
    ("MedMNIST v2 ResNet-50 (scratch)", "224 px", 0.731, 0.912),
    ("MedMNIST v2 Google AutoML Vision", "-", 0.768, None),
    ("MedMNIST+ ResNet-18 (ImageNet)", "64 px", 0.7636, 0.9170),
    ("MedMNIST+ VGG16 (ImageNet)", "64 px", 0.7953, 0.9436),
    ("MedMNIST+ VGG16 (ImageNet)", "128 px", 0.8180, 0.9571),
    ("MedMNIST+ DenseNet-121 (ImageNet)", "224 px", 0.8474, None),
)
ARMS = {"dermamnist": "DermaMNIST split (val as test)", "lesion-grouped": "dermpipe's lesion-grouped split"}


def dermamnist_labels(labels: Sequence[str]) -> np.ndarray:
    """ISIC 2019 class names -> DermaMNIST label indices (AK, SCC -> akiec); an unknown name is an error."""
    unknown = sorted(set(labels) - set(TO_DERMAMNIST))
    if unknown:
        raise ValueError(f"labels {unknown} have no DermaMNIST class; expected ISIC 2019 classes {list(TO_DERMAMNIST)}")
    return np.array([DERMAMNIST_CLASSES.index(TO_DERMAMNIST[label]) for label in labels])


def dermamnist_scores(probabilities: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """(n, 7) DermaMNIST scores from (n, len(classes)) ISIC 2019 probabilities: each class's probability added to
    its DermaMNIST class (akiec = AK + SCC), so the scores are still a distribution."""
    scores = np.zeros((len(probabilities), len(DERMAMNIST_CLASSES)))
    for i, cls in enumerate(classes):
        scores[:, DERMAMNIST_CLASSES.index(TO_DERMAMNIST[cls])] += probabilities[:, i]
    return scores


def medmnist_acc_auc(y_true: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """MedMNIST's multi-class ACC and AUC (its evaluator's getACC/getAUC): argmax accuracy, and the mean over the
    score columns of roc_auc_score(y == i, scores[:, i]). Every class must occur in y_true (AUC is undefined else)."""
    from sklearn.metrics import accuracy_score, roc_auc_score

    absent = [DERMAMNIST_CLASSES[i] for i in range(scores.shape[1]) if not (y_true == i).any()]
    if absent:
        raise ValueError(f"no test image of {absent}: the one-vs-rest AUC of a class needs positives")
    auc = np.mean([roc_auc_score(y_true == i, scores[:, i]) for i in range(scores.shape[1])])
    return float(accuracy_score(y_true, scores.argmax(axis=1))), float(auc)


def figures(predictions: pd.DataFrame, classes: Sequence[str]) -> dict[str, float]:
    """ACC and AUC (DermaMNIST's 7 classes), BMA and recall per ISIC 2019 class present, from evaluate's per-image
    predictions (columns label and p_<class>)."""
    from sklearn.metrics import balanced_accuracy_score, recall_score

    probabilities = predictions[[f"p_{c}" for c in classes]].to_numpy(dtype=float)
    acc, auc = medmnist_acc_auc(dermamnist_labels(predictions["label"]), dermamnist_scores(probabilities, classes))
    y_true = np.array([classes.index(label) for label in predictions["label"]])
    y_pred = probabilities.argmax(axis=1)
    present = sorted(set(y_true.tolist()))
    recall = recall_score(y_true, y_pred, labels=present, average=None, zero_division=0)
    found = {"acc": acc, "auc": auc, "bma": float(balanced_accuracy_score(y_true, y_pred))}
    found.update({f"recall_{classes[c]}": float(r) for c, r in zip(present, recall, strict=True)})
    return found


def majority_figures(predictions: pd.DataFrame, classes: Sequence[str]) -> dict[str, float]:
    """The floor on the same images: always the most frequent class (nv), with uninformative (constant) scores."""
    majority = predictions["label"].value_counts().idxmax()
    constant = predictions.copy()
    for cls in classes:
        constant[f"p_{cls}"] = 1.0 if cls == majority else 0.0
    return figures(constant, classes)


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample sd (nan for one value)."""
    values = np.asarray(values, dtype=float)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else float("nan")


def _cell(values: Sequence[float], digits: int = 3) -> str:
    mean, sd = mean_sd(values)
    return f"{mean:.{digits}f}" if np.isnan(sd) else f"{mean:.{digits}f} ± {sd:.{digits}f}"


def result_table(results: dict[str, list[dict[str, float]]], classes: Sequence[str]) -> str:
    """The published rows, then one row per arm (mean ± sd over its runs): ACC, AUC, BMA, wall time, recalls."""
    recalls = [c for c in classes if any(f"recall_{c}" in r for runs in results.values() for r in runs)]
    head = ["model / split", "n", "ACC", "AUC (7 cl.)", "BMA (ISIC)", "wall (s)", *[f"rec {c}" for c in recalls]]
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for model, size, acc, auc in PUBLISHED:
        lines.append(" | ".join([f"{model}, {size}, DermaMNIST test", "3" if "+" in model else "-", f"{acc:.3f}",
                                 f"{auc:.3f}" if auc is not None else "-", "-", "-", *["-" for _ in recalls]]))
    for arm, runs in results.items():
        cells = [_cell([r[k] for r in runs]) for k in ("acc", "auc", "bma")]
        wall = _cell([r["wall_s"] for r in runs], 0) if all("wall_s" in r for r in runs) else "-"
        rec = [_cell([r[f"recall_{c}"] for r in runs if f"recall_{c}" in r], 2) for c in recalls]
        lines.append(" | ".join([arm, str(len(runs)), *cells, wall, *rec]))
    return "\n".join(lines)


def ratios(results: dict[str, list[dict[str, float]]], arm: str) -> list[str]:
    """The arm's mean ACC and AUC over two published rows' (from scratch at 28 px; ImageNet-pretrained at 64 px)."""
    runs = results[arm]
    lines = []
    for model, size, acc, auc in (PUBLISHED[0], PUBLISHED[4]):
        ours_acc, ours_auc = mean_sd([r["acc"] for r in runs])[0], mean_sd([r["auc"] for r in runs])[0]
        lines.append(f"{arm} / {model} {size}: ACC {ours_acc:.3f} / {acc:.3f} = {ours_acc / acc:.2f}x, "
                     f"AUC {ours_auc:.3f} / {auc:.3f} = {ours_auc / auc:.2f}x")
    return lines


def run_params(arm: str, seed: int, kit: Path, home: Path, epochs: int | None,
               profile: str = "laptop") -> dict[str, object]:
    """`dermpipe run`'s parameters for one run: the profile (the laptop one unless told), the kit, the arm's split,
    the seed."""
    from dermpipe.pipelines.profiles import given_params

    explicit: dict[str, object] = {"source": str(kit), "split_seed": seed, "train_seed": seed}
    if arm == "dermamnist":
        explicit.update(split_method="file", split_file=str(kit / "dermamnist_split.csv"))
    if epochs:
        explicit["epochs"] = epochs
    params = given_params(profile, explicit=explicit)
    params["registry_root"] = str(home / f"registry-{arm}-{seed}")  # no run gates against another's model
    return params


def run_arm(arm: str, seed: int, kit: Path, home: Path, epochs: int | None,
            profile: str = "laptop") -> tuple[dict[str, float], pd.DataFrame]:
    """One pipeline run through the local runner: its figures (with wall time) and evaluate's predictions."""
    from dermpipe import config
    from dermpipe.pipelines.local import run_local

    started = time.perf_counter()
    record = run_local(run_params(arm, seed, kit, home, epochs, profile), pipeline_root=home / "pipeline-root",
                       verbose=False)
    wall = time.perf_counter() - started
    if record.status != "succeeded":
        raise SystemExit(f"{arm} seed {seed}: the run {record.run_id} failed in {record.error or 'a task'}; its task "
                         f"logs are in {home / 'runs' / record.run_id / 'logs'}")
    predictions = pd.read_parquet(record.artifact("evaluate", "predictions")["uri"])
    cached = [name for name, task in record.tasks.items() if task.cached]
    print(f"{arm} seed {seed}: {wall:.0f} s, {len(predictions)} test images"
          + (f" (from the cache: {', '.join(cached)})" if cached else ""), flush=True)
    return {**figures(predictions, config.CLASSES), "wall_s": wall}, predictions


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kit", type=Path, default=KIT)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--epochs", type=int, default=None, help="default: the profile's")
    parser.add_argument("--profile", default="laptop", help="dermpipe run's --profile (laptop, laptop_resnet, ...)")
    parser.add_argument("--quick", action="store_true", help="one seed, 2 epochs: an end-to-end check, not a result")
    parser.add_argument("--home", type=Path, default=None, help="DERMPIPE_HOME for the runs (default: a temp folder)")
    parser.add_argument("--arms", nargs="+", choices=tuple(ARMS), default=list(ARMS))
    args = parser.parse_args(argv)
    if not (args.kit / "dermamnist_split.csv").is_file():
        raise SystemExit(f"{args.kit}: not the HAM10000 kit (no dermamnist_split.csv); pass --kit")
    seeds, epochs = (args.seeds[:1], args.epochs or 2) if args.quick else (args.seeds, args.epochs)
    home = (args.home or Path(tempfile.mkdtemp(prefix="dermpipe-ham10000-"))).resolve()
    os.environ["DERMPIPE_HOME"] = str(home)
    from dermpipe import config

    results: dict[str, list[dict[str, float]]] = {}
    for arm in args.arms:
        runs = [run_arm(arm, seed, args.kit, home, epochs, args.profile) for seed in seeds]
        results[f"dermpipe {args.profile}, {ARMS[arm]}"] = [figures_ for figures_, _ in runs]
        results[f"majority class (nv), {ARMS[arm]}"] = [majority_figures(p, config.CLASSES) for _, p in runs]
    print(f"\nDermaMNIST (7 classes; AK+SCC = akiec) and ISIC 2019 BMA; seeds {seeds}"
          + (f", {epochs} epochs" if epochs else "") + (" (--quick: not a result)" if args.quick else "") + "\n")
    print(result_table(results, config.CLASSES))
    if "dermamnist" in args.arms:
        print("\n" + "\n".join(ratios(results, f"dermpipe {args.profile}, {ARMS['dermamnist']}")))
    print("\nPublished rows: DermaMNIST test (2,005 images, 600x450 originals resized); dermpipe: DermaMNIST val "
          "(998 images of the kit, 200x150 copies) or its own lesion-grouped test split. Runs in " + str(home))


if __name__ == "__main__":
    main()
