"""Measure each candidate OOD score the way the OOD literature does, and serve the one that does best on near-OOD.

In-distribution images are the positives (Hendrycks & Gimpel 2017; Liu et al. 2020): AUROC of telling them from an
OOD set, and FPR at 95 % TPR, the share of OOD images that pass at the score that passes 95 % of in-distribution
images. Both come from scikit-learn's roc_auc_score / roc_curve. The served score is the one with the lowest
near-OOD FPR@95TPR (a new dermatoscope, clinic or population is what a clinic meets), among those that still flag
most far-OOD images (FAR_GUARD); ties go to the higher near-OOD AUROC.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dermpipe.model.profile.ood import OODDetector, calibrate, fit_detector, flagged_rate
from dermpipe.model.profile.ood_scores import Scorer, fit_energy, fit_knn, fit_mahalanobis
from dermpipe.model.profile.reference import EmbeddingPCA

FAR_GUARD = 0.9  # a served score must flag at least this share of far-OOD images at 95 % TPR (FPR@95 <= 0.1)
TPR = 0.95


@dataclass(frozen=True)
class Outputs:
    """A model's outputs on one image set: probabilities [N, C] and "pool" embeddings [N, D]."""

    probabilities: np.ndarray
    embeddings: np.ndarray


@dataclass(frozen=True)
class OODEvidence:
    """What the profile stage measures the candidates on: the far set, the near sets by name (the served score is
    chosen on `near_name`; the others are reported), and the softmax head's (kernel, bias) when it acts on the
    embedding (energy needs logits)."""

    far: Outputs | None = None
    near: dict[str, Outputs] = field(default_factory=dict)
    near_name: str = ""
    head: tuple[np.ndarray, np.ndarray] | None = None


def auroc_fpr(in_scores: np.ndarray, out_scores: np.ndarray, tpr_target: float = TPR) -> dict[str, float]:
    """AUROC and FPR at `tpr_target` TPR with in-distribution as positive (OOD scores: larger = further out)."""
    from sklearn.metrics import roc_auc_score, roc_curve

    in_scores, out_scores = np.asarray(in_scores, np.float64), np.asarray(out_scores, np.float64)
    if not len(in_scores) or not len(out_scores):
        raise ValueError(f"OOD measurement: {len(in_scores)} in-distribution and {len(out_scores)} OOD scores; "
                         "both sets need images")
    truth = np.r_[np.ones(len(in_scores)), np.zeros(len(out_scores))]
    in_ness = -np.r_[in_scores, out_scores]
    fpr, tpr, _ = roc_curve(truth, in_ness, drop_intermediate=False)
    return {"auroc": float(roc_auc_score(truth, in_ness)),
            "fpr_at_95_tpr": float(fpr[np.argmax(tpr >= tpr_target - 1e-12)])}


def fit_candidates(pca: EmbeddingPCA, train: Outputs, labels: np.ndarray,
                   head: tuple[np.ndarray, np.ndarray] | None) -> dict[str, Scorer]:
    """Every candidate fitted on the training rows; energy only when the head's weights act on the embedding."""
    candidates = {"msp": Scorer("msp")}
    if head is not None:
        candidates["energy"] = fit_energy(*head)
    candidates["mahalanobis"] = fit_mahalanobis(train.embeddings, labels)
    candidates["knn"] = fit_knn(train.embeddings)
    candidates["pca_residual"] = fit_detector(pca, train.embeddings).scorer
    return candidates


def measure(scorer: Scorer, pca: EmbeddingPCA, val: Outputs, sets: dict[str, Outputs],
            pass_rate: float) -> tuple[OODDetector, dict[str, dict[str, float]]]:
    """The scorer calibrated on val, and per OOD set: AUROC, FPR@95TPR and its detection rate at that threshold."""
    def scores(outputs: Outputs) -> np.ndarray:
        return scorer.score(outputs.probabilities, outputs.embeddings, pca)

    in_scores = scores(val)
    detector = calibrate(OODDetector(scorer), in_scores, pass_rate)
    figures = {}
    for name, outputs in sets.items():
        out_scores = scores(outputs)
        figures[name] = {**auroc_fpr(in_scores, out_scores), "detection_rate": flagged_rate(detector, out_scores),
                         "n": int(len(out_scores))}
    return detector, figures


def select(figures: dict[str, dict[str, dict[str, float]]], near: str, far: str,
           far_guard: float = FAR_GUARD) -> tuple[str, str]:
    """(served score, why): lowest near FPR@95TPR among the scores whose far FPR@95TPR <= 1 - far_guard (all of
    them if none is), ties to the higher near AUROC, then the name."""
    guarded = [n for n, f in figures.items() if f[far]["fpr_at_95_tpr"] <= 1.0 - far_guard + 1e-12]
    pool = guarded or list(figures)
    best = min(pool, key=lambda n: (figures[n][near]["fpr_at_95_tpr"], -figures[n][near]["auroc"], n))
    f = figures[best]
    guard = (f"it flags {1 - f[far]['fpr_at_95_tpr']:.0%} of far-OOD images at 95 % TPR (guard >= {far_guard:.0%})"
             if guarded else f"no candidate flags >= {far_guard:.0%} of far-OOD images at 95 % TPR, so the guard "
             "could not apply")
    return best, (f"{best}: lowest near-OOD FPR@95TPR ({f[near]['fpr_at_95_tpr']:.3f}, AUROC {f[near]['auroc']:.3f}) "
                  f"on the '{near}' set among {len(figures)} candidates; {guard}")


def choose_detector(candidates: dict[str, Scorer], pca: EmbeddingPCA, val: Outputs, sets: dict[str, Outputs],
                    *, near: str, far: str, pass_rate: float) -> tuple[OODDetector, dict]:
    """The served detector (best on `near`, guarded on `far`) and the report: every candidate's figures per set."""
    if near not in sets or far not in sets:
        raise ValueError(f"OOD selection: sets {sorted(sets)}; expected the near set {near!r} and the far set {far!r}")
    measured = {name: measure(scorer, pca, val, sets, pass_rate) for name, scorer in candidates.items()}
    figures = {name: f for name, (_, f) in measured.items()}
    served, why = select(figures, near, far)
    return measured[served][0], {"served_score": served, "chosen_by": why, "chosen_on": near, "candidates": figures}


def detector_for(pca: EmbeddingPCA, train: Outputs, labels: np.ndarray, val: Outputs, evidence: OODEvidence | None,
                 pass_rate: float) -> tuple[OODDetector, dict]:
    """Chosen detector and its report; without both OOD sets nothing can be measured, so the earlier pca_residual is
    served and the report says it was not chosen by measurement."""
    if evidence is None or evidence.far is None or evidence.near_name not in evidence.near:
        detector, _ = measure(fit_detector(pca, train.embeddings).scorer, pca, val, {}, pass_rate)
        return detector, {"served_score": detector.method, "chosen_on": None, "candidates": {},
                          "chosen_by": "no far and near OOD sets were given, so no score was measured: the default "
                                       "pca_residual is served"}
    candidates = fit_candidates(pca, train, labels, evidence.head)
    sets = {"far": evidence.far, **evidence.near}
    return choose_detector(candidates, pca, val, sets, near=evidence.near_name, far="far", pass_rate=pass_rate)


def transfer_check(flagged: int, n: int, pass_rate: float) -> dict:
    """Whether the threshold calibrated on val holds on unseen in-distribution (test) images: their flagged share
    with its 95 % Wilson interval; it does not hold when the whole interval lies above 1 - pass_rate."""
    from scipy.stats import binomtest

    if n == 0:
        return {"threshold_holds_on_test": None, "transfer_note": "no test images: whether the threshold holds on "
                                                                  "unseen images cannot be told"}
    interval = binomtest(flagged, n).proportion_ci(0.95, method="wilson")
    holds = bool(interval.low <= 1.0 - pass_rate)
    note = (f"{flagged}/{n} test images flagged ({flagged / n:.1%}, 95 % CI {interval.low:.1%} to {interval.high:.1%}) "
            f"against {1 - pass_rate:.0%} intended")
    if not holds:
        note += ("; the threshold does NOT hold on unseen in-distribution images (the validation images were too few "
                 "or too alike to calibrate on): read out_of_distribution answers as 'cannot tell' until it is "
                 "recalibrated on more validation images")
    return {"test_false_refer_lower": float(interval.low), "test_false_refer_upper": float(interval.high),
            "threshold_holds_on_test": holds, "transfer_note": note}
