"""Library warnings (scikit-learn's UndefinedMetricWarning on a class without predictions, Evidently's, pandas')
kept off the terminal: a command's analysis runs under `captured()`, and `write_log` puts each warning in a log file
beside the command's results and returns their count by category for its JSON summary (#30: `dermpipe monitor`
printed about 30 lines of them between its own)."""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def captured() -> Iterator[list[warnings.WarningMessage]]:
    """Record every warning raised inside (each occurrence, not the first per place, so the count is true)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught


def write_log(caught: list[warnings.WarningMessage], path: Path) -> dict:
    """One line per warning (category, where, message) in `path`; the summary: count, by category and the log's
    path (no file when nothing was caught)."""
    by_category = Counter(w.category.__name__ for w in caught)
    if caught:
        lines = (f"{w.category.__name__} {w.filename}:{w.lineno}: {_one_line(w.message)}\n" for w in caught)
        path.write_text("".join(lines))
    return {"count": len(caught), "by_category": dict(by_category.most_common()), "log": str(path) if caught else ""}


def _one_line(message: Warning | str) -> str:
    """A warning's text on one line (setuptools' and Evidently's span several), so the log has one line each."""
    return " ".join(str(message).split())
