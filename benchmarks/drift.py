"""Drift analysis of 100,000 logged predictions, end to end: read the JSONL log, Evidently, decision (+ HTML report).

    python benchmarks/drift.py [--rows 100000] [--reference-rows 20000] [--repeat 1]

Prints dermpipe's figure (`analyse`: our reader + per-column Evidently stat tests with explicit methods + the
DataDriftPreset HTML report), the 60 s target, and the baseline measured in the same run: pandas.read_json per file
+ Evidently's Report(DataDriftPreset()) with its defaults (auto-detected columns and methods), the way the Evidently
docs show it. Both read the same files and decide on the same features.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

TARGET_SECONDS = 60.0


def ours(log_root: Path, reference: pd.DataFrame, model_name: str) -> tuple[float, float, str]:
    """(total seconds, seconds without the HTML report, decision) of dermpipe's analysis."""
    from dermpipe.model.profile.features import log_features, n_components_of
    from dermpipe.monitoring.drift.analysis import analyse
    from dermpipe.monitoring.log_reader import read_prediction_log

    start = time.perf_counter()
    records, _ = read_prediction_log(str(log_root), model_name)
    current = log_features(records, n_components_of(reference.columns))
    read_seconds = time.perf_counter() - start
    start = time.perf_counter()
    decided = analyse(reference, current, html=False)
    decision_seconds = read_seconds + time.perf_counter() - start
    start = time.perf_counter()
    report = analyse(reference, current, html=True)
    total = read_seconds + time.perf_counter() - start
    assert report.decision == decided.decision and len(report.html) > 10_000
    return total, decision_seconds, report.message


def baseline(log_root: Path, reference: pd.DataFrame, model_name: str) -> tuple[float, str]:
    """pandas.read_json(lines=True) per file + Report([DataDriftPreset()]) with Evidently's defaults."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    start = time.perf_counter()
    files = sorted((log_root / model_name).glob("date=*/*.jsonl"))
    current = pd.concat([pd.read_json(f, lines=True) for f in files], ignore_index=True)[list(reference.columns)]
    snapshot = Report([DataDriftPreset()]).run(Dataset.from_pandas(current, data_definition=DataDefinition()),
                                               Dataset.from_pandas(reference, data_definition=DataDefinition()))
    html = snapshot.get_html_str(as_iframe=False)
    share = next(m["value"]["share"] for m in snapshot.dict()["metrics"] if "DriftedColumnsCount" in m["metric_name"])
    assert len(html) > 10_000
    return time.perf_counter() - start, f"drifted share {share:.2f} (Evidently's default rule: >= 0.50)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--reference-rows", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=1, help="best of N runs of each")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    # the tests' generator, one copy: tests/ is not a package (an installed library ships a top-level `tests`)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from synthetic_traffic import log_records, synthetic_features, write_prediction_log

    model_name = "dermpipe-isic2019"
    reference = synthetic_features(args.reference_rows, seed=1)
    with tempfile.TemporaryDirectory() as tmp:
        log_root = Path(tmp) / "logs"
        started = time.perf_counter()
        # traffic slightly moved (0.05 std): what a quiet day looks like; spread over one day of timestamps
        records = log_records(synthetic_features(args.rows, seed=2, shift=0.05), seconds_apart=86_000 / args.rows)
        files = write_prediction_log(records, log_root, model_name)
        size_mb = sum(f.stat().st_size for f in files) / 1e6
        print(f"generated {args.rows:,} log records in {len(files)} JSONL files ({size_mb:.0f} MB) "
              f"in {time.perf_counter() - started:.1f} s; reference profile {args.reference_rows:,} rows")
        baseline(log_root, reference.head(2000), model_name)  # warm-up: imports, first-call caches, both sides
        runs = [ours(log_root, reference, model_name) for _ in range(args.repeat)]
        total, decision_only, message = min(runs)
        base_runs = [baseline(log_root, reference, model_name) for _ in range(args.repeat)]
        base_total, base_message = min(base_runs)
    print(f"dermpipe  {total:7.2f} s end to end (decision alone {decision_only:.2f} s, the rest is the HTML report)"
          f"  -> {message[:110]}")
    print(f"target    {TARGET_SECONDS:7.2f} s  ({'met' if total < TARGET_SECONDS else 'MISSED'})")
    print(f"baseline  {base_total:7.2f} s (pandas.read_json + Evidently Report(DataDriftPreset()) defaults)"
          f"  -> {base_message}")
    print(f"ratio     {base_total / total:7.2f}x (baseline / dermpipe)")
    return 0 if total < TARGET_SECONDS else 1


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    np.seterr(all="ignore")
    sys.exit(main())
