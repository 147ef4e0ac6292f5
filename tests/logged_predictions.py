"""Test helper: prediction-log lines written through the real PredictionLog, as `dermpipe serve` writes them."""

from __future__ import annotations

from dermpipe import config
from dermpipe.serving.prediction_log import PredictionLog, log_line


def write_log(root, model: str, request_ids, *, day: str = "2026-11-29", metadata: dict | None = None,
              predlog: PredictionLog | None = None) -> PredictionLog:
    """One log line per request id, timestamped on `day` (10:00 UTC); returns the flushed log."""
    predlog = predlog or PredictionLog(str(root), model)
    predlog.append([log_line(timestamp=f"{day}T10:00:00.000+00:00", request_id=rid, model_name=model,
                             model_version=1, classes=config.CLASSES, probabilities=[1, 0, 0, 0, 0, 0, 0, 0],
                             stats={}, metadata=metadata or {}, embedding_summary=None) for rid in request_ids])
    assert predlog.flush() == len(request_ids)
    return predlog
