"""What a training run reports: training.json's report, the Metrics drawn from it and the curves HTML page."""

from dataclasses import asdict

import pandas as pd

from dermpipe import config
from dermpipe.model.training.inputs import TrainingInputs
from dermpipe.model.training.runtime import TrainSettings


def training_report(params: TrainSettings, inputs: TrainingInputs, history: dict[str, dict[str, list[float]]],
                    validation: dict[str, float], *, weights: dict[int, float] | None, source: str,
                    runtime: dict[str, object]) -> dict[str, object]:
    """The report train_model returns (training.json): parameters, class balance, per-phase history, validation."""
    return {
        "params": asdict(params),
        "classes": list(config.CLASSES),
        "class_weights": weights,
        "class_counts": inputs.counts,
        "history": history,
        "epochs_run": sum(len(h.get("loss", [])) for h in history.values()),
        "train_rows": inputs.n_train,
        "val_rows": len(inputs.val_labels),
        "input": source,
        "validation": validation,
        "runtime": runtime,
    }


def metadata_report(train: pd.DataFrame, val: pd.DataFrame) -> dict[str, object]:
    """What the metadata branch saw: per split the rows whose age, sex or site is missing or outside the ISIC 2019
    vocabulary (all encoded as unknown, none dropped), the values found outside it, and the encoding's columns.
    Counted on the split tables (with shards, images prepare could not decode are in the tables but not trained)."""
    from dermpipe.model.metadata_inputs import FEATURE_NAMES, coverage, unknown_values

    return {"encoding": list(FEATURE_NAMES), "train": coverage(train), "val": coverage(val),
            "unknown_values": unknown_values(pd.concat([train, val], ignore_index=True))}


def metadata_metrics(report: dict) -> dict[str, int]:
    """metadata_<split>_<count> Metrics from the training report (empty without metadata fusion)."""
    meta = report.get("metadata")
    if not meta:
        return {}
    return {f"metadata_{split}_{key}": value for split in ("train", "val") for key, value in meta[split].items()
            if key != "rows"}


def stage_metrics(report: dict) -> dict[str, float]:
    """The train stage's Metrics: epochs, time, the last epoch's scores, validation, metadata and the curves."""
    last = list(report["history"].values())[-1]
    final = {k: values[-1] for k, values in last.items()
             if k in ("loss", "accuracy", "val_loss", "val_accuracy", "val_balanced_accuracy")}
    return {"epochs_run": report["epochs_run"], "train_seconds": report["runtime"]["train_seconds"],
            **{f"final_{k}": v for k, v in final.items()},
            **{f"val_{k}": v for k, v in report["validation"].items()},
            **metadata_metrics(report), **curve_metrics(report["history"])}


# ---------------------------------------------------------------- curves

def curve_metrics(history: dict[str, dict[str, list[float]]]) -> dict[str, float]:
    """Per-epoch loss / val_loss / val_balanced_accuracy as scalar Metrics (epoch numbered across phases)."""
    values: dict[str, float] = {}
    epoch = 0
    for phase_history in history.values():
        for i in range(len(phase_history.get("loss", []))):
            epoch += 1
            for key in ("loss", "val_loss", "val_balanced_accuracy"):
                if key in phase_history:
                    values[f"curve_{key}_epoch_{epoch:03d}"] = phase_history[key][i]
    return values


def curves_html(history: dict[str, dict[str, list[float]]], title: str = "Training curves") -> str:
    """Loss and validation BMA/accuracy per epoch, one line per phase, as a self-contained HTML page."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dermpipe.reports import img_tag, page, png_bytes, table

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    offset = 0
    rows = []
    for phase, h in history.items():
        n = len(h.get("loss", []))
        epochs = list(range(offset + 1, offset + n + 1))
        for key, ax, style in (("loss", left, "-"), ("val_loss", left, "--"), ("val_balanced_accuracy", right, "-"),
                               ("accuracy", right, ":"), ("val_accuracy", right, "--")):
            if key in h:
                ax.plot(epochs, h[key], style, marker="o", label=f"{phase} {key}")
        rows += [(phase, e, *(h.get(k, [float("nan")] * n)[i] for k in
                              ("loss", "val_loss", "val_balanced_accuracy", "learning_rate")))
                 for i, e in enumerate(epochs)]
        offset += n
    for ax, label in ((left, "loss"), (right, "score")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    plt.close(fig)
    body = img_tag(png_bytes(fig), "training curves") + table(
        ["phase", "epoch", "loss", "val_loss", "val_balanced_accuracy", "learning_rate"], rows)
    return page(title, body)
