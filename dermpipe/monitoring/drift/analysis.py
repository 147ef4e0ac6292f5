"""Drift analysis: compare current traffic with the model's reference profile (Evidently DataDriftPreset) and decide.

Both sides are tables of the same feature columns (dermpipe.model.profile.features); dermpipe.monitoring.drift.inputs
reads them (the reference profile, and a prediction log window or a folder of images) and runs this analysis.

Each feature column is tested with an explicit method and threshold (numeric: normed Wasserstein distance,
categorical: Jensen-Shannon distance, both effect sizes that do not flag trivial shifts on large samples); the data
set has drifted when the share of drifted columns reaches `drift_share`. Fewer than `min_samples` current rows:
no decision ("insufficient data"), never an alarm.
"""

import warnings
from dataclasses import asdict, dataclass, field
from html import escape as html_escape

import numpy as np
import pandas as pd

P_VALUE_METHODS = {"ks", "chisquare", "z", "fisher_exact", "t_test", "mannw", "anderson", "cramer_von_mises",
                   "g_test", "epps_singleton", "es", "empirical_mmd"}
DECISIONS = ("drift", "no drift", "insufficient data")


# "auto" follows Evidently's own default algorithm, made explicit: statistical tests on small samples (where an
# effect size is noisy), effect sizes on large samples (where a test flags every negligible shift).
AUTO_METHODS = {("num", False): "ks", ("num", True): "wasserstein", ("cat", False): "chisquare",
                ("cat", True): "jensenshannon"}
DEFAULT_THRESHOLDS = {"ks": 0.05, "chisquare": 0.05, "z": 0.05, "wasserstein": 0.1, "jensenshannon": 0.1,
                      "psi": 0.1, "kl_div": 0.1, "hellinger": 0.1, "energy_distance": 0.1}


@dataclass(frozen=True)
class DriftConfig:
    """Methods, thresholds and the decision rule (Evidently method names: ks, wasserstein, chisquare, ...).

    num_method/cat_method "auto": ks / chisquare (drift when p < 0.05) while either side has at most
    `large_sample` rows, else wasserstein (normed) / jensenshannon (drift when distance >= 0.1). A threshold of
    None takes the chosen method's default. Per-column overrides win over everything.
    """

    num_method: str = "auto"
    num_threshold: float | None = None
    cat_method: str = "auto"
    cat_threshold: float | None = None
    drift_share: float = 0.5
    min_samples: int = 30
    large_sample: int = 1000
    report_rows: int = 20_000  # the HTML plots a uniform sample of at most this many rows per side
    per_column_method: dict[str, str] = field(default_factory=dict)
    per_column_threshold: dict[str, float] = field(default_factory=dict)

    def method(self, column: str, kind: str, rows: int) -> str:
        chosen = self.per_column_method.get(column, self.num_method if kind == "num" else self.cat_method)
        return AUTO_METHODS[(kind, rows > self.large_sample)] if chosen == "auto" else chosen

    def threshold(self, column: str, kind: str, method: str) -> float:
        if column in self.per_column_threshold:
            return self.per_column_threshold[column]
        chosen = self.num_threshold if kind == "num" else self.cat_threshold
        return chosen if chosen is not None else DEFAULT_THRESHOLDS.get(method, 0.05 if method in P_VALUE_METHODS
                                                                                  else 0.1)


@dataclass
class ColumnDrift:
    column: str
    kind: str  # num | cat
    method: str
    threshold: float
    score: float | None = None
    drifted: bool = False
    reference_values: int = 0
    current_values: int = 0
    skipped: str = ""  # why the column was not tested


@dataclass
class DriftResult:
    decision: str  # one of DECISIONS
    drift_detected: bool
    reference_rows: int
    current_rows: int
    drift_share: float  # drifted / tested columns
    columns: list[ColumnDrift]
    config: DriftConfig
    message: str
    html: str = ""

    @property
    def drifted_columns(self) -> list[str]:
        return [c.column for c in self.columns if c.drifted]

    @property
    def tested_columns(self) -> list[str]:
        return [c.column for c in self.columns if not c.skipped]

    def summary(self) -> dict:
        return {"decision": self.decision, "drift_detected": self.drift_detected, "message": self.message,
                "reference_rows": self.reference_rows, "current_rows": self.current_rows,
                "drift_share": self.drift_share, "drifted_columns": self.drifted_columns,
                "config": asdict(self.config), "columns": [asdict(c) for c in self.columns]}


def column_kinds(columns: list[str]) -> dict[str, str]:
    from dermpipe.model.profile.features import categorical_columns, n_components_of, numeric_columns

    numeric = set(numeric_columns(n_components_of(columns)))
    categorical = set(categorical_columns())
    return {c: "num" if c in numeric else "cat" for c in columns if c in numeric | categorical}


def _plan(reference: pd.DataFrame, current: pd.DataFrame, cfg: DriftConfig) -> list[ColumnDrift]:
    """One ColumnDrift per feature present on both sides; columns with too few values are marked skipped."""
    shared = [c for c in reference.columns if c in current.columns]
    minimum = max(5, cfg.min_samples // 2)
    plan = []
    for column, kind in column_kinds(shared).items():
        method = cfg.method(column, kind, min(len(reference), len(current)))
        entry = ColumnDrift(column, kind, method, cfg.threshold(column, kind, method),
                            reference_values=int(reference[column].notna().sum()),
                            current_values=int(current[column].notna().sum()))
        if entry.reference_values < minimum:
            entry.skipped = f"reference has {entry.reference_values} values (< {minimum})"
        elif entry.current_values < minimum:
            entry.skipped = f"current data has {entry.current_values} values (< {minimum})"
        plan.append(entry)
    return plan


def _evidently_frames(reference: pd.DataFrame, current: pd.DataFrame, plan: list[ColumnDrift]):
    from evidently import DataDefinition, Dataset

    tested = [c for c in plan if not c.skipped]
    numeric = [c.column for c in tested if c.kind == "num"]
    categorical = [c.column for c in tested if c.kind == "cat"]
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)

    def frame(table: pd.DataFrame) -> pd.DataFrame:
        out = table[numeric + categorical].copy()
        out[numeric] = out[numeric].astype(float)
        for column in categorical:
            out[column] = out[column].astype(object).where(out[column].notna(), None)
        return out

    return (Dataset.from_pandas(frame(reference), data_definition=definition),
            Dataset.from_pandas(frame(current), data_definition=definition))


def _constant(reference: pd.Series, current: pd.Series) -> bool:
    """One value on both sides: nothing to plot (Evidently's histogram binning fails on a zero range)."""
    return pd.concat([reference.dropna(), current.dropna()]).nunique() <= 1


def evidently_report(reference: pd.DataFrame, current: pd.DataFrame, plan: list[ColumnDrift], cfg: DriftConfig):
    """Run DataDriftPreset with the plan's explicit per-column methods and thresholds; returns the snapshot.

    Columns holding one single value on both sides are left out of the report (they cannot drift)."""
    from evidently import Report
    from evidently.presets import DataDriftPreset

    tested = [c for c in plan if not c.skipped and not _constant(reference[c.column], current[c.column])]
    ref_ds, cur_ds = _evidently_frames(reference, current, tested)
    preset = DataDriftPreset(
        columns=[c.column for c in tested], drift_share=cfg.drift_share,
        per_column_method={c.column: c.method for c in tested},
        per_column_threshold={c.column: c.threshold for c in tested},
    )
    return Report([preset], include_tests=True).run(cur_ds, ref_ds)


def report_column_results(snapshot) -> dict[str, tuple[float | None, bool]]:
    """{column: (score, drifted)} as the Evidently report's ValueDrift metrics and tests state them."""
    data = snapshot.dict()
    scores = {m["config"]["column"]: m["value"] for m in data["metrics"]
              if m.get("config", {}).get("type", "").endswith("ValueDrift")}
    drifted = {t["metric_config"]["params"]["column"]: t["status"] == "FAIL" for t in data.get("tests", [])
               if t.get("metric_config", {}).get("params", {}).get("type", "").endswith("ValueDrift")}
    return {column: (None if score is None else float(score), drifted.get(column, False))
            for column, score in scores.items()}


def _sample(table: pd.DataFrame, rows: int) -> pd.DataFrame:
    return table if len(table) <= rows else table.sample(rows, random_state=0)


def report_page(reference: pd.DataFrame, current: pd.DataFrame, plan: list[ColumnDrift], cfg: DriftConfig,
                message: str) -> str:
    """Evidently's HTML report under a banner with dermpipe's decision (which always uses every row).

    Rendering costs grow with the rows plotted, so each side is drawn from a seeded uniform sample of at most
    cfg.report_rows rows; the banner says so when it happens."""
    ref, cur = _sample(reference, cfg.report_rows), _sample(current, cfg.report_rows)
    with warnings.catch_warnings(), np.errstate(all="ignore"):  # numpy/scipy noise on degenerate columns
        warnings.simplefilter("ignore", RuntimeWarning)
        page = evidently_report(ref, cur, plan, cfg).get_html_str(as_iframe=False)
    notes = [f"<strong>dermpipe decision</strong>: {html_escape(message)}"]
    if len(ref) < len(reference) or len(cur) < len(current):
        notes.append(f"The charts and scores below are drawn from a uniform sample of {len(ref):,} of "
                     f"{len(reference):,} reference rows and {len(cur):,} of {len(current):,} current rows; the "
                     "decision above, the metrics and drift.json use every row.")
    banner = ("<div style='font-family:sans-serif;padding:12px;border-bottom:1px solid #ccc'>"
              + "<br>".join(notes) + "</div>")
    return page.replace("<body>", "<body>" + banner, 1) if "<body>" in page else banner + page


def _insufficient_html(message: str) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>Drift report</title></head><body>"
            f"<h1>Drift report: insufficient data</h1><p>{message}</p></body></html>")


def column_test(reference: pd.Series, current: pd.Series, entry: ColumnDrift) -> None:
    """Evidently's stat test of one column (the function DataDriftPreset calls), NaN dropped on both sides."""
    from evidently.legacy.calculations.stattests.registry import get_stattest
    from evidently.legacy.core import ColumnType

    kind = ColumnType.Numerical if entry.kind == "num" else ColumnType.Categorical
    ref, cur = reference.dropna(), current.dropna()
    if entry.kind == "num":
        ref, cur = ref.astype(float), cur.astype(float)
    else:
        ref, cur = ref.astype(str), cur.astype(str)
    with np.errstate(all="ignore"):
        result = get_stattest(ref, cur, kind, entry.method)(ref, cur, kind, entry.threshold)
    entry.score = float(result.drift_score)
    entry.drifted = bool(result.drifted)


def analyse(reference: pd.DataFrame, current: pd.DataFrame, cfg: DriftConfig = DriftConfig(), *,
            html: bool = True) -> DriftResult:
    """Per-column drift and the overall decision; the Evidently HTML report in result.html when html is set.

    Each column is tested with Evidently's stat test for its method (what DataDriftPreset computes); the HTML is
    the DataDriftPreset report with the same per-column methods and thresholds (rendering it costs seconds, so
    callers that need only the decision pass html=False).
    """
    plan = _plan(reference, current, cfg)
    rows = (len(reference), len(current))
    if len(current) < cfg.min_samples:
        message = (f"insufficient data: {len(current)} current rows, at least {cfg.min_samples} needed "
                   "(--min-samples); no drift decision is made")
        return DriftResult("insufficient data", False, *rows, 0.0, plan, cfg, message,
                           _insufficient_html(message) if html else "")
    tested = [c for c in plan if not c.skipped]
    if not tested:
        message = "insufficient data: no feature column has enough values on both sides; no drift decision is made"
        return DriftResult("insufficient data", False, *rows, 0.0, plan, cfg, message,
                           _insufficient_html(message) if html else "")
    for entry in tested:
        column_test(reference[entry.column], current[entry.column], entry)
    share = sum(c.drifted for c in tested) / len(tested)
    detected = share >= cfg.drift_share
    drifted = [c.column for c in tested if c.drifted]
    message = (f"{'drift' if detected else 'no drift'}: {len(drifted)} of {len(tested)} columns drifted "
               f"(share {share:.2f}, rule >= {cfg.drift_share:.2f})" + (f": {', '.join(drifted)}" if drifted else ""))
    page = report_page(reference, current, plan, cfg, message) if html else ""
    return DriftResult("drift" if detected else "no drift", detected, *rows, share, plan, cfg, message, page)


def config_from_params(min_samples: int, drift_share: float, num_method: str, num_threshold: float,
                       cat_method: str, cat_threshold: float) -> DriftConfig:
    """DriftConfig from flat pipeline/CLI parameters (a threshold <= 0 means the method's default)."""
    return DriftConfig(num_method=num_method, num_threshold=num_threshold if num_threshold > 0 else None,
                       cat_method=cat_method, cat_threshold=cat_threshold if cat_threshold > 0 else None,
                       drift_share=drift_share, min_samples=min_samples)
