"""Decision-curve analysis (Vickers & Elkin 2006): is referring by this model better than referring everyone or no one?

A clinician who refers at a threshold probability p_t says that missing a melanoma is (1 - p_t) / p_t times worse
than an unnecessary biopsy. The net benefit of a rule is then TP/n - FP/n * p_t / (1 - p_t): true referrals, less
unnecessary ones weighted by that exchange rate. "Refer all" has net benefit prevalence - (1 - prevalence) *
p_t / (1 - p_t); "refer none" has 0. An operating point is worth using only where the model's net benefit beats both.
"""

from __future__ import annotations

import numpy as np

P_T_MAX = 1.0 - 1e-6  # p_t / (1 - p_t) is infinite at 1
CURVE_GRID = np.round(np.arange(0.01, 0.96, 0.01), 2)


def odds(p_t: float | np.ndarray) -> float | np.ndarray:
    """p_t / (1 - p_t), the weight of a false referral against a true one at threshold probability p_t."""
    p_t = np.clip(p_t, 0.0, P_T_MAX)
    return p_t / (1.0 - p_t)


def net_benefit(positive: np.ndarray, referred: np.ndarray, p_t: float) -> float:
    """TP/n - FP/n * p_t/(1-p_t) of the referrals `referred` (bool per image) at threshold probability p_t."""
    positive, referred = np.asarray(positive, bool).ravel(), np.asarray(referred, bool).ravel()
    if positive.shape != referred.shape or not len(positive):
        raise ValueError(f"net benefit: {len(positive)} labels for {len(referred)} referrals; expected one each")
    n = len(positive)
    return float((referred & positive).sum() / n - (referred & ~positive).sum() / n * odds(p_t))


def refer_all(positive: np.ndarray, p_t: float) -> float:
    """Net benefit of referring every image at threshold probability p_t."""
    return net_benefit(positive, np.ones(len(np.ravel(positive)), bool), p_t)


def curve(positive: np.ndarray, scores: np.ndarray, grid: np.ndarray = CURVE_GRID) -> dict[str, list[float]]:
    """Net benefit of the model (refer when score >= p_t), of refer-all and of refer-none over `grid`."""
    return {"threshold_probability": [float(p) for p in grid],
            "model": [net_benefit(positive, np.asarray(scores) >= p, p) for p in grid],
            "refer_all": [refer_all(positive, p) for p in grid], "refer_none": [0.0] * len(grid)}


def decision_curve_figure(positive: np.ndarray, scores: np.ndarray, points: list[dict]):
    """Net benefit against threshold probability, with refer-all, refer-none and each operating point marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    found = curve(positive, scores)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.plot(found["threshold_probability"], found["model"], label="model (calibrated melanoma probability)")
    ax.plot(found["threshold_probability"], found["refer_all"], "k:", label="refer all")
    ax.axhline(0.0, color="grey", linewidth=0.8, label="refer none")
    for p in points:
        threshold = min(p["threshold"], P_T_MAX)
        ax.plot([threshold], [net_benefit(positive, np.asarray(scores) >= threshold, threshold)],
                "o" if p["valid"] else "x", label=f"{p['name']}{'' if p['valid'] else ' (not achievable)'}")
    prevalence = float(np.mean(positive)) if len(positive) else 0.0
    ax.set_ylim(min(-0.05, -prevalence / 4), max(prevalence * 1.1, 0.05))
    ax.set_xlabel("threshold probability p_t")
    ax.set_ylabel("net benefit (test split)")
    ax.legend(fontsize=7)
    plt.close(fig)
    return fig


def roc_points_figure(positive: np.ndarray, scores: np.ndarray, points: list[dict]):
    """Melanoma-vs-rest ROC on test with each operating point's test (1 - specificity, sensitivity) marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import RocCurveDisplay

    fig, ax = plt.subplots(figsize=(5, 5))
    if 0 < np.sum(positive) < len(positive):
        RocCurveDisplay.from_predictions(positive, scores, ax=ax, name="MEL vs rest", plot_chance_level=True)
    for p in points:
        sens, spec = p["test"].get("sensitivity", np.nan), p["test"].get("specificity", np.nan)
        ax.plot([1.0 - spec], [sens], "o" if p["valid"] else "x", label=p["name"])
    ax.set(xlabel="1 - specificity", ylabel="sensitivity")
    ax.legend(fontsize=7)
    plt.close(fig)
    return fig
