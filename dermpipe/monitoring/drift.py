"""drift: compare current traffic with the model's reference profile (Evidently DataDriftPreset) and decide.

Current data is either the prediction log of `dermpipe serve` for a time window (JSON Lines under
`<log_root>/<model name>/date=YYYY-MM-DD/*.jsonl`, local or gs://) or a folder of images with an optional metadata
CSV; both become the same feature columns (dermpipe.monitoring.features) as the reference profile.

Each feature column is tested with an explicit method and threshold (numeric: normed Wasserstein distance,
categorical: Jensen-Shannon distance, both effect sizes that do not flag trivial shifts on large samples); the data
set has drifted when the share of drifted columns reaches `drift_share`. Fewer than `min_samples` current rows:
no decision ("insufficient data"), never an alarm.
"""

import datetime as dt
import json
import warnings
from dataclasses import asdict, dataclass, field
from html import escape as html_escape
from pathlib import Path

import numpy as np
import pandas as pd

from dermpipe import config

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
    from dermpipe.monitoring.features import categorical_columns, n_components_of, numeric_columns

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


# ---------------------------------------------------------------- reference and current data


@dataclass
class Reference:
    folder: str
    profile: pd.DataFrame
    pca: object | None  # EmbeddingPCA
    model_file: str | None
    model_name: str
    image_size: int | None = None  # the model's input size: image statistics are computed at it


def _exists(path: str) -> bool:
    if "://" in path:
        from dermpipe.monitoring.features import remote_exists

        return remote_exists(path)
    return Path(path).exists()


def _read_text(path: str) -> str:
    from dermpipe.monitoring.features import _read_bytes

    return _read_bytes(path).decode()


def resolve_reference(path: str) -> str:
    """A profile folder or registry version folder (holding reference_profile.parquet) or a registry model folder
    (holding current.json: the served version is used)."""
    from dermpipe.monitoring.features import PROFILE_FILE

    path = path.rstrip("/")
    if _exists(f"{path}/{PROFILE_FILE}"):
        return path
    if _exists(f"{path}/current.json"):
        pointer = json.loads(_read_text(f"{path}/current.json"))
        return resolve_reference(str(pointer["uri"]))
    raise FileNotFoundError(
        f"{path}: no {PROFILE_FILE} here (nor a current.json naming a registry version that has one). --reference "
        "takes the training run's `profile` artifact folder, a registry version folder <registry>/<model>/<N> "
        "deployed with its profile, or the registry model folder <registry>/<model>")


def load_reference(path: str) -> Reference:
    from dermpipe.monitoring.features import PCA_FILE, PROFILE_FILE, PROFILE_JSON, EmbeddingPCA, _read_bytes

    folder = resolve_reference(path)
    import io

    profile = pd.read_parquet(io.BytesIO(_read_bytes(f"{folder}/{PROFILE_FILE}")))
    pca = EmbeddingPCA.load(f"{folder}/{PCA_FILE}") if _exists(f"{folder}/{PCA_FILE}") else None
    info = json.loads(_read_text(f"{folder}/{PROFILE_JSON}")) if _exists(f"{folder}/{PROFILE_JSON}") else {}
    record = json.loads(_read_text(f"{folder}/dermpipe.json")) if _exists(f"{folder}/dermpipe.json") else {}
    model_file = next((m for m in (f"{folder}/model.keras", info.get("model_file")) if m and _exists(m)), None)
    name = record.get("model_name") or info.get("model_name") or config.MODEL_NAME
    size = info.get("image_size")
    return Reference(folder, profile, pca, model_file, name, int(size) if size else None)


def reference_features(reference: Reference) -> pd.DataFrame:
    from dermpipe.monitoring.features import feature_columns, n_components_of

    return reference.profile[[c for c in feature_columns(n_components_of(reference.profile.columns))
                              if c in reference.profile.columns]]


def _parse_day(value: str, name: str, now: dt.datetime | None = None) -> dt.datetime | None:
    """An ISO date/time (UTC unless it says otherwise) or a look-back such as `24h` or `7d` (now minus that)."""
    if not value:
        return None
    if value[:-1].isdigit() and value[-1:] in ("h", "d"):
        hours = int(value[:-1]) * (24 if value.endswith("d") else 1)
        return (now or dt.datetime.now(dt.UTC)) - dt.timedelta(hours=hours)
    try:
        stamp = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as err:
        raise ValueError(f"--{name} {value!r} is not an ISO date or time (e.g. 2026-11-24 or "
                         "2026-11-24T06:00) nor a look-back such as 24h or 7d") from err
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.UTC)


def _list(path: str) -> list[str]:
    if "://" in path:
        from dermpipe.monitoring.features import remote_list

        return remote_list(path)
    return sorted(p.name for p in Path(path).iterdir())


def log_files(log_root: str, model_name: str, since: str = "", until: str = "") -> list[str]:
    """The JSONL files of the partitions date=YYYY-MM-DD that overlap the window [since, until)."""
    root = log_root.rstrip("/")
    folder = root if any(n.startswith("date=") for n in _list(root)) else f"{root}/{model_name}"
    if not _exists(folder):
        raise FileNotFoundError(f"{log_root}: no prediction log for model {model_name!r} (expected "
                                f"{folder}/date=YYYY-MM-DD/*.jsonl, as written by `dermpipe serve`)")
    start, end = _parse_day(since, "since"), _parse_day(until, "until")
    files = []
    for name in sorted(n for n in _list(folder) if n.startswith("date=")):
        try:
            day = dt.date.fromisoformat(name.removeprefix("date="))
        except ValueError:
            continue
        day_start = dt.datetime.combine(day, dt.time(), dt.UTC)  # the partition holds [day_start, +1 day)
        if (start and day_start + dt.timedelta(days=1) <= start) or (end and day_start >= end):
            continue
        files += [f"{folder}/{name}/{f}" for f in _list(f"{folder}/{name}") if f.endswith(".jsonl")]
    return files


def parse_jsonl(data: bytes) -> tuple[pd.DataFrame, int]:
    """(records, malformed line count) of one JSON Lines file: pyarrow's reader, or line by line when a line is bad."""
    import pyarrow as pa
    import pyarrow.json as pa_json

    try:
        table = pa_json.read_json(pa.py_buffer(data), read_options=pa_json.ReadOptions(block_size=1 << 24))
        return table.drop_columns([c for c in ("probabilities",) if c in table.column_names]).to_pandas(), 0
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    records, malformed = [], 0
    for line in data.splitlines():
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            malformed += 1
    return pd.DataFrame.from_records(records).drop(columns=["probabilities"], errors="ignore"), malformed


def read_prediction_log(log_root: str, model_name: str, since: str = "", until: str = "",
                        ) -> tuple[pd.DataFrame, dict[str, int]]:
    """Log records of the window [since, until) with counts of files, lines read, malformed lines, out of window."""
    from dermpipe.monitoring.features import _read_bytes

    files = log_files(log_root, model_name, since, until)
    frames, malformed = [], 0
    for path in files:
        frame, bad = parse_jsonl(_read_bytes(path))
        frames.append(frame)
        malformed += bad
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    read = len(table) + malformed
    outside = 0
    if "timestamp" in table:  # ISO strings or (pyarrow) datetimes: one UTC dtype either way
        table["timestamp"] = pd.to_datetime(table["timestamp"], utc=True, errors="coerce", format="ISO8601")
    if not table.empty and "timestamp" in table and (since or until):
        stamps = table["timestamp"]
        keep = pd.Series(True, index=table.index)
        if since:
            keep &= stamps >= pd.Timestamp(_parse_day(since, "since"))
        if until:
            keep &= stamps < pd.Timestamp(_parse_day(until, "until"))
        outside = int((~keep).sum())
        table = table[keep].reset_index(drop=True)
    return table, {"log_files": len(files), "log_lines": read, "malformed_lines": malformed,
                   "outside_window": outside}


def current_features(reference: Reference, current: str, *, since: str = "", until: str = "",
                     metadata_csv: str = "", model_file: str = "") -> tuple[pd.DataFrame, dict, list]:
    """Features of the current data (a prediction log root or an image folder), counts and failed images."""
    from dermpipe.monitoring.features import (
        DEFAULT_COMPONENTS,
        image_features,
        list_images,
        log_features,
        n_components_of,
        read_metadata_csv,
    )

    n_components = reference.pca.n_components if reference.pca is not None else n_components_of(
        reference.profile.columns)
    if "://" not in current and Path(current).is_dir() and not _looks_like_log(current, reference.model_name):
        from dermpipe.model import metadata_inputs
        from dermpipe.model.zoo import load_classifier

        paths = list_images(Path(current))
        model_path = model_file or reference.model_file
        model = load_classifier(model_path, compile=False) if model_path else None
        image_size = metadata_inputs.image_size(model) if model is not None else reference.image_size
        if image_size is None:
            raise ValueError(f"{reference.folder}: the reference profile does not record the model's input size "
                             "(profile.json image_size) and no model file was found beside it; pass --model-file "
                             "(the model.keras of this version) so the images' statistics are computed as the "
                             "model sees them")
        features, failed = image_features(paths, read_metadata_csv(metadata_csv or None), image_size=image_size,
                                          model=model, pca=reference.pca,
                                          n_components=n_components or DEFAULT_COMPONENTS)
        counts = {"images": len(paths), "failed_images": len(failed), "model_used": int(model is not None)}
        return features.drop(columns=["image"], errors="ignore"), counts, failed
    records, counts = read_prediction_log(current, reference.model_name, since, until)
    return log_features(records, n_components), counts, []


def _looks_like_log(folder: str, model_name: str) -> bool:
    names = _list(folder)
    return any(n.startswith("date=") for n in names) or (
        model_name in names and any(n.startswith("date=") for n in _list(f"{folder}/{model_name}")))


# ---------------------------------------------------------------- KFP stage


def metric_values(result: DriftResult, counts: dict[str, int]) -> dict[str, float]:
    values: dict[str, float] = {
        "drift_detected": int(result.drift_detected),
        "insufficient_data": int(result.decision == "insufficient data"),
        "drift_share": result.drift_share,
        "drift_share_rule": result.config.drift_share,
        "drifted_columns": len(result.drifted_columns),
        "tested_columns": len(result.tested_columns),
        "reference_rows": result.reference_rows,
        "current_rows": result.current_rows,
        **counts,
    }
    for column in result.columns:
        if column.score is not None and np.isfinite(column.score):
            values[f"score_{column.column}"] = column.score
        if not column.skipped:
            values[f"drifted_{column.column}"] = int(column.drifted)
    return values


def run(reference: str, current: str, report, metrics, results, cfg: DriftConfig, *, since: str = "",
        until: str = "", metadata_csv: str = "", model_file: str = "") -> bool:
    from dermpipe.lineage.artifacts import annotate, log_metrics

    ref = load_reference(reference)
    current_table, counts, failed = current_features(ref, current, since=since, until=until,
                                                     metadata_csv=metadata_csv, model_file=model_file)
    result = analyse(reference_features(ref), current_table, cfg)
    Path(report.path).parent.mkdir(parents=True, exist_ok=True)
    Path(report.path).write_text(result.html)
    summary = {**result.summary(), "reference": ref.folder, "current": current, "since": since, "until": until,
               "counts": counts, "failed_images": [{"path": p, "error": e} for p, e in failed]}
    Path(results.path).parent.mkdir(parents=True, exist_ok=True)
    Path(results.path).write_text(json.dumps(summary, indent=1, default=str))
    annotate(report, {"decision": result.decision, "drifted_columns": result.drifted_columns})
    annotate(results, {"decision": result.decision, "message": result.message, "reference": ref.folder,
                       "current": current, "drifted_columns": result.drifted_columns})
    log_metrics(metrics, metric_values(result, counts))
    print(result.message)
    return result.drift_detected


def config_from_params(min_samples: int, drift_share: float, num_method: str, num_threshold: float,
                       cat_method: str, cat_threshold: float) -> DriftConfig:
    """DriftConfig from flat pipeline/CLI parameters (a threshold <= 0 means the method's default)."""
    return DriftConfig(num_method=num_method, num_threshold=num_threshold if num_threshold > 0 else None,
                       cat_method=cat_method, cat_threshold=cat_threshold if cat_threshold > 0 else None,
                       drift_share=drift_share, min_samples=min_samples)
