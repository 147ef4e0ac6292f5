"""The sweep's leaderboard: its configurations (parsed by dermpipe.model.training.fold_plan.parse_sweep) ranked by
their cross-validated BMA (the OOF BMA when folds were run, else the validation BMA), never by a test score: the
test split stays for the final evaluation of the chosen model or ensemble.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pandas only where a leaderboard is built: pre-flight parses the sweep without it
    import pandas as pd

SCORE_COLUMNS = ("oof_balanced_accuracy", "val_balanced_accuracy")


def leaderboard(results: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per configuration (its name, overrides as JSON and scores), best first by the first score column
    present (OOF BMA, else validation BMA); ranks start at 1."""
    import pandas as pd

    if not results:
        raise ValueError("leaderboard: no configuration results; expected one per sweep configuration")
    table = pd.DataFrame([{**r, "config": json.dumps({k: v for k, v in r.get("config", {}).items()})}
                          for r in results])
    score = next((c for c in SCORE_COLUMNS if c in table.columns and table[c].notna().all()), None)
    if score is None:
        raise ValueError(f"leaderboard: every result needs one of {list(SCORE_COLUMNS)}; got {list(table.columns)}")
    table = table.sort_values([score, "name"], ascending=[False, True]).reset_index(drop=True)
    table.insert(0, "rank", range(1, len(table) + 1))
    table.attrs["score"] = score
    return table


def top(table: pd.DataFrame, n: int) -> list[str]:
    """The names of the best `n` configurations (what an ensemble of the top N would combine)."""
    if n < 1:
        raise ValueError(f"top: n={n}; expected at least 1")
    return table["name"].head(n).tolist()


def leaderboard_markdown(table: pd.DataFrame) -> str:
    """The leaderboard as a Markdown table, with what it was ranked by."""
    columns = [c for c in ("rank", "name", *SCORE_COLUMNS, "cv_balanced_accuracy_mean", "cv_balanced_accuracy_std")
               if c in table.columns]
    lines = [f"Ranked by {table.attrs['score']} (never by the test split).", "",
             "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for _, row in table.iterrows():
        lines.append("| " + " | ".join(f"{row[c]:.4f}" if isinstance(row[c], float) else str(row[c])
                                       for c in columns) + " |")
    return "\n".join(lines) + "\n"


def leaderboard_metrics(table: pd.DataFrame) -> dict[str, float]:
    """Scalar Metrics: the best score and each configuration's score by rank."""
    score = table.attrs["score"]
    return {f"best_{score}": float(table[score].iloc[0]), "configurations": len(table),
            **{f"rank_{int(r)}_{score}": float(v) for r, v in zip(table["rank"], table[score], strict=True)}}
