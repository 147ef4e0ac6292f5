"""The performance stage's analysis: read the prediction log window and the fed-back labels, measure each served
version (estimates.py), judge it against its registry test figures (drop.py) and render the report and metrics.
The stage (stage.py) and `dermpipe monitor` call `analyse`."""

from __future__ import annotations

import html
from dataclasses import asdict, dataclass, field
from typing import Protocol

import pandas as pd

from dermpipe.model.evaluation.bootstrap import Resampling
from dermpipe.monitoring.performance import estimates as perf
from dermpipe.monitoring.performance.drop import DROP, NO_DROP, Minimums, judge_version, test_figures, thresholds


class PerformanceSettings(Resampling, Minimums, Protocol):
    """What the analysis reads of the stage's PerformanceParams (this module does not import the stage)."""

    @property
    def period(self) -> str: ...


@dataclass
class VersionPerformance:
    """One served version over the window: coverage, label delay, judged estimates, confusion, per-period rows."""

    version: int
    coverage: dict
    delays: dict
    estimates: list[dict]
    confusion: list[list[int]]
    verdict: str
    periods: list[dict] = field(default_factory=list)
    evidently: tuple[str, str] = ("", "")  # (ClassificationPreset HTML, why not): for the report, not the JSON


@dataclass
class PerformanceResult:
    versions: list[VersionPerformance]
    counts: dict
    params: PerformanceSettings
    note: str = ""  # why nothing was measured (no labels, not a log)
    registry_root: str = ""  # where the versions' test figures were read; "" = estimates reported, not judged

    @property
    def dropped(self) -> bool:
        return any(v.verdict == DROP for v in self.versions)

    @property
    def message(self) -> str:
        if self.note:
            return f"performance: {self.note}"
        words = ", ".join(f"version {v.version} {v.verdict}" for v in self.versions)
        decided = self.dropped or any(v.verdict == NO_DROP for v in self.versions)
        unjudged = "" if self.registry_root else ("; no registry_root given, so no version was judged against its "
                                                  "test figures: pass registry_root or a registry folder as reference")
        return (f"performance: {'DROP' if self.dropped else 'no drop' if decided else 'no decision'} ({words})"
                f"{unjudged}")

    def summary(self) -> dict:
        versions = [{k: v for k, v in asdict(version).items() if k != "evidently"} for version in self.versions]
        return {"performance_dropped": self.dropped, "message": self.message, "note": self.note,
                "registry_root": self.registry_root,
                "counts": self.counts, "params": asdict(self.params), "versions": versions}


def _log_and_labels_root(current: str, model_name: str) -> str:
    """The root the labels were stored under: `current`, or its parent when `current` is the model's log folder."""
    from dermpipe.storage import list_names

    root = current.rstrip("/")
    if root.endswith(f"/{model_name}") and any(n.startswith("date=") for n in list_names(root)):
        return root[: -len(model_name) - 1]
    return root


def analyse(current: str, model_name: str, registry_root: str, params: PerformanceSettings, *,
            since: str = "", until: str = "", evidently: bool = False) -> PerformanceResult:
    """Join the window's predictions to the labels and measure and judge each version that served it (with
    `evidently`, also run Evidently's ClassificationPreset on each version's labelled lines for the report)."""
    from dermpipe.monitoring.log_reader import looks_like_log, read_prediction_log
    from dermpipe.serving.labels import read_labels

    if "://" not in current and not looks_like_log(current, model_name):
        return PerformanceResult([], {}, params, f"{current} is not a prediction log of {model_name}: not measured")
    root = _log_and_labels_root(current, model_name)
    try:
        predictions, counts = read_prediction_log(current, model_name, since, until, probabilities=True)
    except FileNotFoundError as err:  # a drift-only run of another model name must not fail here
        return PerformanceResult([], {}, params, f"{err}: not measured (is model_name right?)")
    labels = read_labels(root, model_name)
    if labels.empty or predictions.empty:
        what = "no labels fed back" if labels.empty else "no predictions in the window"
        return PerformanceResult([], {**counts, "labels_read": len(labels)}, params,
                                 f"{what} ({root}/{model_name}/labels): not measured")
    joined, join_counts = perf.join_labels(predictions, labels)
    versions = pd.to_numeric(joined["model_version"], errors="coerce")
    counts = {**counts, **join_counts, **perf.coverage(joined), "unversioned_lines": int(versions.isna().sum())}
    measured = [measure_version(int(v), rows, registry_root, model_name, params, evidently)
                for v, rows in joined[versions.notna()].groupby(versions[versions.notna()].astype(int))]
    return PerformanceResult(measured, counts, params, registry_root=registry_root)


def measure_version(version: int, rows: pd.DataFrame, registry_root: str, model_name: str,
                    params: PerformanceSettings, evidently: bool = False) -> VersionPerformance:
    """Estimates of one version's labelled lines, judged against its test figures (none without a registry)."""
    folder = f"{registry_root.rstrip('/')}/{model_name}/{version}" if registry_root else ""
    cuts, calibration = thresholds(folder) if folder else ({}, None)
    estimates = perf.estimates(rows, cuts, params, calibration)
    verdict = judge_version(estimates, test_figures(folder) if folder else {}, params)
    cut = [{"period": key, **perf.coverage(group), "estimates": perf.estimates(group, cuts, params, calibration)}
           for key, group in perf.periods(rows, params.period)]
    from dermpipe.monitoring.performance.evidently_report import classification_html

    return VersionPerformance(version, perf.coverage(rows), perf.label_delays(rows), estimates,
                              perf.confusion(rows), verdict, cut, classification_html(rows) if evidently else ("", ""))


# ---------------------------------------------------------------- what people read


def _fmt(value, digits: int = 3) -> str:
    return "" if value is None or (isinstance(value, float) and value != value) else f"{value:.{digits}f}"


def estimate_rows(result: PerformanceResult) -> list[tuple[str, ...]]:
    """Header and one row per version and estimate: metric, value, interval, n, the test figure and the verdict."""
    rows = [("version", "metric", "operating point", "value", "interval", "n", "test (interval)", "verdict")]
    for v in result.versions:
        for e in v.estimates:
            test = ("none" if e.get("test_point") is None else _fmt(e["test_point"]) if e.get("test_lower") is None
                    else f"{_fmt(e['test_point'])} [{_fmt(e['test_lower'])}, {_fmt(e['test_upper'])}]")
            rows.append((str(v.version), e["metric"], e["operating_point"] or "-", _fmt(e["point"]),
                         f"[{_fmt(e['lower'])}, {_fmt(e['upper'])}]", str(e["n"]), test, e["verdict"]))
    return rows


def text_table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def coverage_lines(result: PerformanceResult) -> list[str]:
    """Per version: predictions, labelled, unlabelled share and label delay; then what was not joined."""
    lines = []
    for v in result.versions:
        c, d = v.coverage, v.delays
        delay = (f"; label delay to result median {_fmt(d.get('result_days_median'), 1)} d (p90 "
                 f"{_fmt(d.get('result_days_p90'), 1)}), to feedback median {_fmt(d.get('received_days_median'), 1)} d"
                 if d.get("labelled") else "")
        lines.append(f"  version {v.version}: {c['predictions']} predictions, {c['labelled']} labelled, "
                     f"{c['unlabelled_share']:.1%} still without a label{delay}; verdict {v.verdict}")
        if d.get("dated_before_prediction"):
            lines.append(f"    {d['dated_before_prediction']} labels are dated before their prediction: check them")
    k = result.counts
    if k.get("labels_outside_window") or k.get("repeated_labels"):
        lines.append(f"  not joined: {k.get('labels_outside_window', 0)} labels of request ids outside the window "
                     f"({', '.join(k.get('labels_outside_window_ids', [])[:5])}...), {k.get('repeated_labels', 0)} "
                     "repeated labels (the latest received kept)")
    return lines


def render_html(result: PerformanceResult) -> str:
    """A self-contained page: the decision, coverage and delay, the estimate table, each confusion matrix."""
    from dermpipe import config

    def table(rows: list[tuple[str, ...]]) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows[1:])
        return f"<table border=1 cellpadding=3><tr>{head}</tr>{body}</table>"

    parts = [f"<h1>Performance monitoring</h1><p><b>{html.escape(result.message)}</b></p>",
             f"<pre>{html.escape(chr(10).join(coverage_lines(result)))}</pre>"]
    if result.versions:
        parts.append(table(estimate_rows(result)))
        reasons = [(str(v.version), e["metric"], e["operating_point"], e["reason"]) for v in result.versions
                   for e in v.estimates]
        parts.append("<h2>Verdicts</h2>" + table([("version", "metric", "operating point", "reason"), *reasons]))
    for v in result.versions:
        rows = [("diagnosis \\ predicted", *config.CLASSES),
                *[(c, *map(str, r)) for c, r in zip(config.CLASSES, v.confusion, strict=True)]]
        parts.append(f"<h2>Version {v.version}: confusion matrix (labelled lines)</h2>" + table(rows))
        page, why = v.evidently
        if page or why:
            parts.append(f"<h2>Version {v.version}: Evidently ClassificationPreset (labelled lines)</h2>" + (
                f'<iframe srcdoc="{html.escape(page)}" style="width:100%;height:1400px;border:0"></iframe>'
                if page else f"<p>{html.escape(why)}</p>"))
        for p in v.periods:
            parts.append(f"<h3>Version {v.version}, period {html.escape(p['period'])}: {p['labelled']} labelled of "
                         f"{p['predictions']}</h3>" + table([("metric", "operating point", "value", "lower", "upper",
                                                              "n"), *[(e["metric"], e["operating_point"],
                                                                       _fmt(e["point"]), _fmt(e["lower"]),
                                                                       _fmt(e["upper"]), str(e["n"]))
                                                                      for e in p["estimates"]]]))
    return "<!DOCTYPE html><html><body>" + "".join(parts) + "</body></html>"


def metric_values(result: PerformanceResult) -> dict[str, float]:
    """Scalars for the Metrics artifact: the decision, coverage, and per version its verdict and estimates."""
    values: dict[str, float] = {"performance_dropped": int(result.dropped), "versions_measured": len(result.versions),
                                **{k: v for k, v in result.counts.items() if isinstance(v, (int, float))}}
    for v in result.versions:
        values[f"v{v.version}_dropped"] = int(v.verdict == DROP)
        values[f"v{v.version}_labelled"] = v.coverage["labelled"]
        for e in v.estimates:
            key = f"v{v.version}_{e['metric']}" + (f"_{e['operating_point']}" if e["operating_point"] else "")
            values.update({key: e["point"], f"{key}_lower": e["lower"], f"{key}_upper": e["upper"], f"{key}_n": e["n"]})
    return {k: float(v) for k, v in values.items() if v == v}  # nan (no example on a side) is left out
