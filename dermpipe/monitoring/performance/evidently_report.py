"""Evidently's ClassificationPreset on one served version's labelled lines, for the performance report.

dermpipe's own estimates (estimates.py) carry the bootstrap intervals and the decision; Evidently adds its standard
classification views (quality by class, confusion, ROC and precision-recall from the logged probabilities).
Evidently 0.7 cannot run on every small sample (a class present on one side only can fail inside its metrics), so a
failure is shown in the report in place of its section, never hidden and never fatal.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dermpipe import config


def _frame(rows: pd.DataFrame) -> tuple[pd.DataFrame, bool]:
    """diagnosis, predicted_class and, when every row logged a full vector, one probability column per class."""
    table = rows[["diagnosis", "predicted_class"]].astype(str).reset_index(drop=True)
    probs = rows["probabilities"] if "probabilities" in rows else None
    if probs is None or not probs.map(lambda p: p is not None and len(p) == len(config.CLASSES)).all():
        return table, False
    matrix = np.array([np.asarray(p, float) for p in probs])
    return table.assign(**{c: matrix[:, i] for i, c in enumerate(config.CLASSES)}), True


def classification_html(rows: pd.DataFrame) -> tuple[str, str]:
    """(Evidently's HTML, '') for the labelled rows, or ('', why it could not run)."""
    from evidently import DataDefinition, Dataset, MulticlassClassification, Report
    from evidently.presets import ClassificationPreset

    labelled = rows[rows["diagnosis"].notna()]
    if labelled["diagnosis"].nunique() < 2:
        return "", f"{len(labelled)} labelled lines with {labelled['diagnosis'].nunique()} diagnosis: too few to run"
    table, with_probas = _frame(labelled)
    task = MulticlassClassification(target="diagnosis", prediction_labels="predicted_class",
                                    prediction_probas=list(config.CLASSES) if with_probas else None)
    try:
        data = Dataset.from_pandas(table, data_definition=DataDefinition(classification=[task]))
        return Report([ClassificationPreset()]).run(data, None).get_html_str(as_iframe=False), ""
    except Exception as err:  # noqa: BLE001 - Evidently's own limits on small samples; shown in the report
        return "", f"Evidently's ClassificationPreset could not run on these {len(labelled)} lines: " \
                   f"{type(err).__name__}: {err}"
