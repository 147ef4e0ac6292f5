"""What the pages show besides the raw store rows: CSS classes of statuses, report titles, a confusion matrix as a
table, two runs' parameters side by side. Pure helpers (unit-tested)."""

from __future__ import annotations

from typing import Any

from dermpipe.lineage.store import Artifact

STATUS_CLASS = {"success": "ok", "failure": "bad", "running": "running", "succeeded": "ok", "failed": "bad"}
REPORT_TITLES = {("evaluate", "report"): "Evaluation report", ("explain", "gallery"): "Grad-CAM gallery",
                 ("merge", "report"): "Data report", ("gate", "decision"): "Deployment decision",
                 ("evaluate", "confusion"): "Confusion matrix"}
REPORT_TYPES = ("system.HTML", "system.Markdown")


def confusion_table(metadata: dict[str, Any]) -> dict[str, Any] | None:
    """{'labels': [...], 'rows': [[...]]} from a ClassificationMetrics artifact's confusionMatrix metadata."""
    matrix = metadata.get("confusionMatrix")
    if not matrix:
        return None
    labels = [spec.get("displayName", "") for spec in matrix.get("annotationSpecs", [])]
    rows = [[int(v) for v in row.get("row", [])] for row in matrix.get("rows", [])]
    return {"labels": labels, "rows": rows, "max": max((max(r) for r in rows if r), default=0)}


def diff_params(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[str, Any, Any, bool]]:
    """(name, value in a, value in b, differs) over the union of two runs' parameters."""
    keys = list(dict.fromkeys([*a, *b]))
    return [(k, a.get(k, ""), b.get(k, ""), a.get(k) != b.get(k)) for k in keys]


def report_title(task: str, output: str, artifact: Artifact) -> str:
    if (task, output) in REPORT_TITLES:
        return REPORT_TITLES[(task, output)]
    if "drift" in f"{task} {output} {artifact.uri}".lower():
        return "Drift report"
    return f"{task} · {output}"
