"""`dermpipe predict IMAGE_OR_FOLDER ...`: the deployed model's answer for image files, as a table, CSV or JSON."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict
from enum import StrEnum
from pathlib import Path

import typer

from dermpipe import config


class Format(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


def _top(prediction) -> str:
    return ", ".join(f"{label} {probability:.3f}" for label, probability in prediction.top)


def as_table(answer) -> str:
    """One row per answered image: image, predicted class, its probability, the decision (with clinical.json), the
    top 3; then why, for an image predicted MEL but routine and one the model could not decide on."""
    rows = [("image", "predicted", "probability", "decision", "top 3")]
    rows += [(p.image, p.label, f"{p.probability:.3f}", p.decision or "-", _top(p)) for p in answer.predictions]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join([*(v.ljust(w) for v, w in zip(row[:4], widths, strict=True)), row[4]]).rstrip()
             for row in rows]
    why = [f"  {p.image}: {p.decision_reason}" for p in answer.predictions if p.decision_reason
           and (not p.decision or (p.decision == "routine" and p.label == "MEL"))]
    override = " [gate_override: deployed by a person's override of the gate, not blessed by it]"
    return "\n".join([f"model: {answer.model}{override if answer.gate_override else ''}",
                      f"decision from: {answer.decision_from}", *lines, *(["why:", *why] if why else [])])


def as_csv(answer) -> str:
    """image, predicted, probability, top 3 (`CLASS p; ...`), decision, operating point, OOD score (empty without
    clinical.json), error (an unreadable file's reason, else empty), decision_reason (why the decision)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["image", "predicted", "probability", "top3", "decision", "operating_point", "ood_score",
                     "error", "decision_reason"])
    for p in answer.predictions:
        writer.writerow([p.image, p.label, f"{p.probability:.4f}",
                         "; ".join(f"{label} {prob:.4f}" for label, prob in p.top), p.decision, p.operating_point,
                         "" if p.ood_score is None else f"{p.ood_score:.4f}", "", p.decision_reason])
    for u in answer.unreadable:
        writer.writerow([u.image, "", "", "", "", "", "", u.reason, ""])
    return out.getvalue().rstrip("\n")


def predict(
    images: list[Path] = typer.Argument(..., help="image files and/or folders (their .jpg/.jpeg/.png files)"),
    model: str = typer.Option(None, help="a registry version number, a model folder (holding model.keras: a "
                                         "registry version or a run's model artifact) or a local run's id "
                                         "[default: the registry's current version]"),
    registry_root: str = typer.Option(None, help="model registry [default: $DERMPIPE_HOME/registry]"),
    model_name: str = typer.Option(config.MODEL_NAME, help="model name in the registry"),
    output: Format = typer.Option(Format.table, "--format", help="table (for people), csv or json"),
    gradcam: Path = typer.Option(None, "--gradcam", help="write a Grad-CAM overlay PNG per image into this folder"),
    operating_point: str = typer.Option(None, help="a stored operating point by name, e.g. melanoma_sens99 "
                                                   "[default: the version's own]"),
) -> None:
    """Predicted class, probability, top 3 and the decision (refer_melanoma | routine | out_of_distribution: advice
    for a clinician, not a diagnosis) at the model's own operating points: clinical.json beside the model, else the
    profile of the run that made it (found in the lineage store); `decision from:` says which. Unreadable files are
    listed with the reason, the others answered; the exit status is 1 when any file was unreadable, 2 when the model
    cannot be found or the operating point is not stored."""
    from dermpipe.deploy.predict import PredictError
    from dermpipe.deploy.predict import predict as ask

    try:
        answer = ask(images, model, registry_root=registry_root, model_name=model_name, gradcam_dir=gradcam,
                     operating_point=operating_point)
    except PredictError as err:
        typer.echo(f"dermpipe predict: {err}", err=True)
        raise typer.Exit(2) from err
    if output is Format.json:
        typer.echo(json.dumps({"model": answer.model, "gate_override": answer.gate_override,
                               "decision_from": answer.decision_from,
                               "predictions": [asdict(p) for p in answer.predictions],
                               "unreadable": [asdict(u) for u in answer.unreadable]}, indent=1))
    elif output is Format.csv:
        typer.echo(as_csv(answer))
        if answer.decision_from.startswith("none"):
            typer.echo(f"decision from: {answer.decision_from}", err=True)
        if answer.gate_override:
            typer.echo(f"gate_override: {answer.model} was deployed by a person's override of the gate", err=True)
    else:
        typer.echo(as_table(answer))
        for unreadable in answer.unreadable:
            typer.echo(f"unreadable: {unreadable.image}: {unreadable.reason}", err=True)
    if answer.unreadable:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("predict")(predict)
