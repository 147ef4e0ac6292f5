"""model_card.html: the card (dermpipe.deploy.model_card) as one self-contained page, in Mitchell et al.'s order."""

from __future__ import annotations

import html
from typing import Any

from dermpipe import config
from dermpipe.reports import page, table


def _value(value: Any) -> str:
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e9 else f"{value:.4g}"  # KFP counts are floats
    if isinstance(value, list | tuple) and len(value) == 2 and all(isinstance(v, float) for v in value):
        return f"{value[0]:.2f}-{value[1]:.2f}"
    if isinstance(value, list | tuple):
        return ", ".join(map(_value, value))
    return "-" if value is None else str(value)


def _with_interval(figures: dict[str, Any], name: str) -> str:
    value = figures.get(name)
    if value is None:
        return "-"
    low, high = figures.get(f"{name}_lower"), figures.get(f"{name}_upper")
    return f"{value:.2f}" + (f" ({low:.2f}-{high:.2f})" if low is not None and high is not None else "")


def _flat(data: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Nested fields as (dotted name, value) rows; long lists as their length."""
    rows: list[tuple[str, str]] = []
    for key, value in data.items():
        if isinstance(value, dict):
            rows += _flat(value, f"{prefix}{key}.")
        elif isinstance(value, list) and len(value) > 8:
            rows.append((f"{prefix}{key}", f"{len(value)} values (model_card.json)"))
        else:
            rows.append((f"{prefix}{key}", _value(value)))
    return rows


def _list(items: list[str]) -> str:
    return "<ul>" + "".join(f"<li>{html.escape(item)}</li>" for item in items) + "</ul>"


def _details(details: dict[str, Any]) -> str:
    shown = {k: v for k, v in details.items() if k not in ("training_parameters", "ensemble") and v not in (None, "")}
    return (table(["field", "value"], [(k.replace("_", " "), _value(v)) for k, v in shown.items()])
            + "<h3>Training parameters</h3>" + table(["parameter", "value"], _flat(details["training_parameters"]))
            + (table(["ensemble", "value"], _flat(details["ensemble"])) if details["ensemble"] else ""))


def _data(data: dict[str, Any]) -> str:
    counts = data["counts_per_class"]
    splits = [s for s in ("train", "val", "train+val", "test") if s in counts]
    rows = [(cls, *(counts[s][cls] for s in splits)) for cls in config.CLASSES]
    rows.append(("images", *(data["rows"].get(s) if data["rows"].get(s) is not None else sum(counts[s].values())
                             for s in splits)))
    missing = data["metadata_missing_share"]
    fields = sorted({f for shares in missing.values() for f in shares})
    return ("<h3>Collections and licences</h3>"
            + (table(["collection", "images (train+val)", "licence"],
                     [(c["collection"], c["images"], c["licence"]) for c in data["collections"]])
               if data["collections"] else "<p>The split tables could not be read: collections unknown.</p>")
            + _licences(data.get("licences"))
            + "<h3>Images per class and split</h3>" + table(["class", *splits], rows)
            + ("<h3>Share of images without each metadata field</h3>"
               + table(["split", *fields], [(s, *(f"{v.get(f, 0):.1%}" for f in fields)) for s, v in missing.items()])
               if fields else ""))


def _licences(summary: dict[str, Any] | None, shown: int = 20) -> str:
    """The training images' licences as recorded per image (copyright_license, attribution), and who to credit."""
    from dermpipe.data.licences import verdict

    head = f"<h3>Licences (per image, train + val)</h3><p><strong>{html.escape(verdict(summary))}</strong></p>"
    if not summary:
        return head
    credits = summary.get("attributions") or []
    more = f"<p>and {len(credits) - shown} more in attribution.txt</p>" if len(credits) > shown else ""
    return (head + table(["copyright_license", "images"], list(summary.get("licences", {}).items()))
            + (table(["attribution", "copyright_license", "images"],
                     [(c["attribution"], c["copyright_license"], c["images"]) for c in credits[:shown]]) + more
               if credits else ""))


def _evaluation(evaluation: dict[str, Any], sliced: dict[str, list[dict[str, Any]]]) -> str:
    interval = evaluation.get("balanced_accuracy_interval") or {}
    headline = [(k.replace("_", " "), _value(evaluation[k])) for k in
                ("balanced_accuracy", "accuracy", "macro_f1", "expected_calibration_error", "test_rows")
                if k in evaluation]
    if interval:
        headline.insert(1, ("balanced accuracy 95 % interval", f"{interval['lower']:.4f}-{interval['upper']:.4f} "
                                                               f"({interval['method']})"))
    per_class = table(["class", "test images", "recall", "recall 95 % interval (Wilson)", "F1"],
                      [(r["class"], _value(r.get("n")), _value(r.get("recall")), _value(r.get("recall_interval")),
                        _value(r.get("f1"))) for r in evaluation["per_class"]])
    slices = "".join(f"<h3>By {html.escape(title)}</h3>" + table(
        ["slice", "n", "accuracy", "BMA"], [(r["slice"], r["n"], r["accuracy"], r["balanced_accuracy"]) for r in rows])
        for title, rows in sliced.items()) or "<p>Not available: evaluate's test predictions could not be read.</p>"
    return (table(["metric", "value"], headline) + "<h3>Per class</h3>" + per_class
            + _challenge(evaluation.get("isic_challenge_score")) + "<h2>Sliced metrics (test split)</h2>" + slices)


def _challenge(score: dict[str, Any] | None) -> str:
    """The official ISIC challenge score (isic-challenge-scoring), as evaluate computed it on the test split."""
    if not score:
        return ("<h3>ISIC challenge score</h3><p>Not recorded: this version was evaluated before evaluate ran the "
                "official scorer.</p>")
    names = {"balanced_accuracy": "balanced multiclass accuracy (a tied top probability counts as wrong)",
             "auc": "mean ROC AUC", "auc_sens_80": "mean AUC above 80 % sensitivity", "ap": "mean average precision",
             "classes_scored": "classes scored", "undecided_images": "undecided images (tied top probability)"}
    headline = table(["metric", "official (isic-challenge-scoring)"],
                     [(name, _value(score.get(key))) for key, name in names.items() if score.get(key) is not None])
    per_class = table(["class", "ROC AUC", "AUC above 80 % sensitivity", "average precision"],
                      [(cls, _value(v["auc"]), _value(v["auc_sens_80"]), _value(v["ap"]))
                       for cls, v in score["per_class"].items()])
    return "<h3>ISIC challenge score</h3>" + headline + per_class


def _clinical(points: list[dict[str, Any]], ood: dict[str, Any] | None) -> str:
    if not points:
        return "<p>None: this version has no clinical.json, so answers carry no decision.</p>"
    summary = table(["point", "target sensitivity", "threshold", "chosen on", "valid", "sensitivity where chosen",
                     "specificity where chosen", "test sensitivity (95 %)", "test specificity (95 %)"],
                    [(p.get("name", "?") + (" (default)" if p.get("default") else ""), _value(p.get(
                        "target_sensitivity")), _value(p.get("threshold")), _value(p.get("chosen_on")),
                      {True: "yes", False: "no: " + str(p.get("invalid") or "")}.get(p.get("valid"), "not recorded"),
                      _value((p.get("chosen") or {}).get("sensitivity")),
                      _value((p.get("chosen") or {}).get("specificity")),
                      _with_interval(p.get("test") or {}, "sensitivity"),
                      _with_interval(p.get("test") or {}, "specificity")) for p in points])
    body = summary + "".join(
        f"<details><summary>{html.escape(p.get('name', '?'))}: every recorded figure</summary>"
        + table(["field", "value"], _flat({k: v for k, v in p.items() if k not in ("name", "default")}))
        + "</details>" for p in points)
    return body + "<h2>Out-of-distribution calibration</h2>" + (
        table(["field", "value"], _flat(ood)) if ood else "<p>No OOD detector: no image is flagged.</p>")


def render(card: dict[str, Any], curve_figures: str = "") -> str:
    """The card as one HTML page; `curve_figures`: the decision curve and ROC images (drawn from the test
    predictions, which the JSON card does not keep)."""
    details = card["model_details"]
    title = f"Model card: {details['name']} version {details['version']}"
    use = card["intended_use"]
    body = (f"<p><strong>{html.escape(card['caveat'])}</strong></p>"
            + "<h2>Model details</h2>" + _details(details)
            + "<h2>Intended use</h2>" + f"<p>{html.escape(use['primary_use'])}</p><p>Users: "
            f"{html.escape(use['primary_users'])}</p><h3>Out of scope</h3>" + _list(use["out_of_scope"])
            + "<h2>Training data</h2>" + _data(card["training_data"])
            + "<h2>Evaluation (test split)</h2>" + _evaluation(card["evaluation"], card["sliced_metrics"])
            + "<h2>Operating points</h2>" + _clinical(card["operating_points"], card["ood"])
            + ("<h3>Decision curve and ROC (test split)</h3>" + curve_figures if curve_figures else "")
            + "<h2>Gate</h2>" + table(["field", "value"], _flat(card["gate"]))
            + "<h2>Limitations</h2>" + _list(card["limitations"])
            + "<h2>Caveat</h2>" + f"<p>{html.escape(card['caveat'])}</p>")
    return page(title, body)
