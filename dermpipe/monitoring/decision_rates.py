"""Refer and OOD rates of served decisions over time, from the prediction log, reported beside drift.

A rising out-of-distribution rate says traffic is leaving what the model was made for (often before the drift
test has enough rows to say so); a refer rate far from validation's says the melanoma threshold now refers a
different share of patients than it was chosen for. Lines without a decision (a version deployed without
clinical.json) are not counted.
"""

from __future__ import annotations

import pandas as pd

RATES = {"refer_rate": "refer_melanoma", "ood_rate": "out_of_distribution", "routine_rate": "routine"}


def _rates(decisions: pd.Series) -> dict[str, float]:
    return {name: float((decisions == value).mean()) for name, value in RATES.items()}


def decision_rates(records: pd.DataFrame) -> dict:
    """{"decided": n, refer_rate, ood_rate, routine_rate, "by_day": [{date, decided, rates...}]}; {"decided": 0}
    when no line carries a decision."""
    if "decision" not in records.columns:
        return {"decided": 0}
    decided = records[records["decision"].notna()]
    if decided.empty:
        return {"decided": 0}
    days = decided["timestamp"].astype(str).str[:10] if "timestamp" in decided.columns else pd.Series(
        "", index=decided.index)
    by_day = [{"date": day, "decided": len(group), **_rates(group["decision"])}
              for day, group in decided.groupby(days, sort=True)]
    return {"decided": len(decided), **_rates(decided["decision"]), "by_day": by_day}


def rates_lines(rates: dict) -> list[str]:
    """What `dermpipe monitor` prints: the window's rates, then one line per day."""
    if not rates.get("decided"):
        return ["decisions  none logged (the served version has no clinical.json, or the window has no lines)"]
    lines = [f"decisions  {rates['decided']} logged: refer {rates['refer_rate']:.1%}, out of distribution "
             f"{rates['ood_rate']:.1%}, routine {rates['routine_rate']:.1%}"]
    lines += [f"  {d['date']}  n={d['decided']:<6} refer {d['refer_rate']:.1%}  OOD {d['ood_rate']:.1%}"
              for d in rates["by_day"]]
    return lines
