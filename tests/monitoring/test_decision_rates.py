"""Refer and OOD rates of the logged decisions, per window and per day, beside drift in `dermpipe monitor`."""

import datetime as dt
import json

import pandas as pd
from synthetic_traffic import log_records, synthetic_features, write_prediction_log
from test_drift import _profile_folder
from typer.testing import CliRunner

from dermpipe.cli.main import app
from dermpipe.monitoring.decision_rates import decision_rates, rates_lines

DAY_ONE = ["routine"] * 6 + ["refer_melanoma"] * 3 + ["out_of_distribution"]  # OOD 10 %
DAY_TWO = ["routine"] * 4 + ["refer_melanoma"] * 2 + ["out_of_distribution"] * 4  # OOD 40 %: traffic changed


def _records() -> list[dict]:
    records = log_records(synthetic_features(20, seed=3, n_components=4), seconds_apart=3600 * 2.4)
    for record, decision in zip(records, DAY_ONE + DAY_TWO, strict=True):
        record.update({"decision": decision, "operating_point": "melanoma_sens95", "ood_score": 1.0})
    return records


def test_rates_per_window_and_per_day():
    rates = decision_rates(pd.DataFrame(_records()))
    assert rates["decided"] == 20 and rates["refer_rate"] == 0.25 and rates["ood_rate"] == 0.25
    assert [(d["date"], d["decided"], d["ood_rate"]) for d in rates["by_day"]] == [
        ("2026-11-24", 10, 0.1), ("2026-11-25", 10, 0.4)]
    assert rates["by_day"][1]["refer_rate"] == 0.2 and rates["routine_rate"] == 0.5
    undecided = pd.DataFrame([{**r, "decision": None} for r in _records()])
    assert decision_rates(undecided) == {"decided": 0} == decision_rates(undecided.drop(columns="decision"))
    assert rates_lines({"decided": 0})[0].startswith("decisions  none logged")


def test_monitor_shows_the_rates_next_to_drift(tmp_path):
    folder, _, _, _ = _profile_folder(tmp_path)
    write_prediction_log(_records(), tmp_path / "logs")
    result = CliRunner().invoke(app, ["monitor", "--reference", str(folder), "--current", str(tmp_path / "logs"),
                                      "--out", str(tmp_path / "out"), "--min-samples", "5"])
    assert result.exit_code == 0, result.output
    assert "decisions  20 logged: refer 25.0%, out of distribution 25.0%, routine 50.0%" in result.output
    assert "2026-11-25  n=10     refer 20.0%  OOD 40.0%" in result.output
    summary = json.loads((tmp_path / "out" / "drift.json").read_text())
    assert summary["decisions"]["ood_rate"] == 0.25 and len(summary["decisions"]["by_day"]) == 2
    assert dt.date.fromisoformat(summary["decisions"]["by_day"][0]["date"]) == dt.date(2026, 11, 24)
