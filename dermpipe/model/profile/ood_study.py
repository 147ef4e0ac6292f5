"""Measure the OOD candidates on real near-OOD collections, the way the profile stage measures them at run time.

A study trains a small classifier (simple_cnn, a few epochs) on one collection, fits every candidate score
(dermpipe.model.profile.ood_select) on its training images, calibrates each on its validation images, and measures
AUROC / FPR@95TPR / detection at the threshold on: the far set (dermpipe.model.profile.ood_set), the run-time near set
(the validation images through a new device, dermpipe.model.profile.ood_near) and any real sets given (another
collection, held-out classes, held-out images of the same collection). The served score is chosen as the profile
stage chooses it, on far + new_device only; the real sets then show whether that choice holds. Used by
benchmarks/ood.py and the data tests.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dermpipe.model.profile.ood_near import NEAR_SET_NAME, write_near_set
from dermpipe.model.profile.ood_select import Outputs, fit_candidates, measure, select


@dataclass(frozen=True)
class Study:
    figures: dict[str, dict[str, dict[str, float]]]  # candidate -> set -> auroc, fpr_at_95_tpr, detection_rate, n
    served: str
    chosen_by: str


def labelled_images(kit: Path) -> tuple[list[Path], np.ndarray, np.ndarray]:
    """(image paths, class indices, lesion groups) of a data set in the Kaggle isic-2019 layout (images under
    ISIC_2019_Training_Input/, labels from the one-hot ground-truth CSV, lesion_id from the metadata CSV: an image
    without one is its own group), sorted by name."""
    import pandas as pd

    from dermpipe import config
    from dermpipe.model.profile.features import image_key, list_images

    truth = pd.read_csv(kit / config.GROUND_TRUTH_CSV)
    label = dict(zip(truth["image"].map(image_key), truth[list(config.CLASSES)].to_numpy().argmax(axis=1),
                     strict=True))
    meta = pd.read_csv(kit / config.METADATA_CSV)
    lesion = dict(zip(meta["image"].map(image_key), meta["lesion_id"], strict=True))
    paths = sorted(list_images(kit / "ISIC_2019_Training_Input"), key=lambda p: p.name)
    missing = [p.name for p in paths if image_key(p.name) not in label]
    if missing:
        raise ValueError(f"{kit / config.GROUND_TRUTH_CSV}: no label for {len(missing)} images, e.g. {missing[:3]}")
    keys = [image_key(p.name) for p in paths]
    groups = [lesion.get(k) if isinstance(lesion.get(k), str) else k for k in keys]
    return paths, np.array([label[k] for k in keys]), np.array(groups)


def grouped_split(groups: np.ndarray, fractions: tuple[float, ...], seed: int) -> list[np.ndarray]:
    """Row indices of len(fractions) + 1 parts, whole lesions per part (images of one lesion never straddle two: a
    held-out image must be a lesion the model has not seen); each part takes shuffled lesions until it holds its
    share of the images, the last part the rest."""
    groups = np.asarray(groups)
    order = np.random.default_rng(seed).permutation(np.unique(groups))
    sizes = {g: n for g, n in zip(*np.unique(groups, return_counts=True), strict=True)}
    targets, part, filled = np.cumsum(fractions) * len(groups), np.zeros(len(order), int), 0
    for i, g in enumerate(order):
        part[i] = int(np.searchsorted(targets, filled, side="right"))
        filled += sizes[g]
    assigned = dict(zip(order, part, strict=True))
    parts = np.array([assigned[g] for g in groups])
    return [np.flatnonzero(parts == k) for k in range(len(fractions) + 1)]


def pixels(paths: list[Path], image_size: int) -> np.ndarray:
    """[N, S, S, 3] float32 as training and serving decode them."""
    from dermpipe.data.images import bytes_decoder

    decode = bytes_decoder(image_size)
    return np.stack([decode(Path(p).read_bytes()).numpy() for p in paths])


def train_small(paths: list[Path], labels: np.ndarray, *, image_size: int = 64, epochs: int = 8, seed: int = 0):
    """A simple_cnn on these images (8-class head, class-balanced weights), trained briefly: a tiny stand-in for
    the pipeline's model whose embedding and head the scores read."""
    import keras

    from dermpipe import config
    from dermpipe.model.zoo import build_classifier

    keras.utils.set_random_seed(seed)
    model, _ = build_classifier("simple_cnn", image_size, len(config.CLASSES), seed=seed, augment={})
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    labels = np.asarray(labels)
    present, counts = np.unique(labels, return_counts=True)
    weights = {int(c): len(labels) / (len(present) * n) for c, n in zip(present, counts, strict=True)}
    model.fit(pixels(paths, image_size), labels, epochs=epochs, batch_size=32, class_weight=weights, verbose=0)
    return model


def outputs(model, paths: list[Path], image_size: int) -> Outputs:
    from dermpipe.model.profile.features import decode_images, failed_message

    decoded = decode_images(paths, image_size, model)
    if decoded.failed:
        raise ValueError(f"OOD study: {failed_message(decoded.failed, len(paths))}")
    return Outputs(decoded.probabilities, decoded.embeddings)


def run_study(model, train: tuple[list[Path], np.ndarray], val: list[Path], real_sets: dict[str, list[Path]],
              image_size: int, pass_rate: float = 0.95) -> Study:
    """Every candidate's figures on far, new_device and the real sets; served chosen on far + new_device."""
    from dermpipe.model.profile.ood_set import write_ood_set
    from dermpipe.model.profile.reference import fit_embedding_pca
    from dermpipe.model.profile.stage import head_weights

    train_out, val_out = outputs(model, train[0], image_size), outputs(model, val, image_size)
    with tempfile.TemporaryDirectory() as folder:
        sets = {"far": outputs(model, write_ood_set(Path(folder) / "far"), image_size),
                NEAR_SET_NAME: outputs(model, write_near_set(val, Path(folder) / "near"), image_size)}
    sets |= {name: outputs(model, paths, image_size) for name, paths in real_sets.items()}
    pca = fit_embedding_pca(train_out.embeddings, 5)
    candidates = fit_candidates(pca, train_out, train[1], head_weights(model, train_out.embeddings.shape[1]))
    figures = {name: measure(scorer, pca, val_out, sets, pass_rate)[1] for name, scorer in candidates.items()}
    served, why = select({n: {s: f[s] for s in ("far", NEAR_SET_NAME)} for n, f in figures.items()},
                         NEAR_SET_NAME, "far")
    return Study(figures, served, why)


def format_table(study: Study) -> str:
    """One line per candidate: AUROC / FPR@95TPR / detected-at-threshold per set; the served score marked."""
    sets = list(next(iter(study.figures.values())))
    lines = [f"{'score':14s}" + "".join(f"{s[:22]:>24s}" for s in sets),
             f"{'':14s}" + "".join(f"{'AUROC FPR95 flagged':>24s}" for _ in sets)]
    for name, per_set in study.figures.items():
        cells = "".join(f"{f['auroc']:>9.3f}{f['fpr_at_95_tpr']:>6.2f}{f['detection_rate']:>9.2f}"
                        for f in per_set.values())
        lines.append(f"{name + (' *' if name == study.served else ''):14s}{cells}")
    return "\n".join(lines)
