"""Library warnings (scikit-learn's UndefinedMetricWarning on a class without predictions, Evidently's, pandas')
kept off the terminal: a command's analysis runs under `captured()`, and `write_log` puts each warning in a log file
beside the command's results and returns their count by category for its JSON summary (#30: `dermpipe monitor`
printed about 30 lines of them between its own). TensorFlow's start-up lines (oneDNN, CUDA, CPU features) are
written by its C++ runtime straight to file descriptor 2, past Python's warnings: `start_tensorflow()` imports it with
that descriptor sent to a file and returns them for the same log."""

from __future__ import annotations

import os
import re
import sys
import tempfile
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

STARTUP = "TensorFlowStartup"  # the category the start-up lines are logged and counted under
# absl's line prefix (I0000 00:00:... for INFO, W/E/F) and its "before absl::InitializeLog()" notice begin a message;
# any other line continues the one before (the CPU feature guard's second line)
_NEW_MESSAGE = re.compile(r"^(?:[IWEF]\d{4} |WARNING: )")


@contextmanager
def captured() -> Iterator[list[warnings.WarningMessage]]:
    """Record every warning raised inside (each occurrence, not the first per place, so the count is true)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught


def start_tensorflow() -> list[str]:
    """Import TensorFlow and initialise its devices with this process's stderr sent to a file; the messages its
    runtime printed meanwhile ([] when it was already imported). Python errors still reach the terminal: the
    descriptor is restored before an import error propagates."""
    if "tensorflow" in sys.modules:
        return []
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # as the local runner's tasks: fewer lines after start-up
    sys.stderr.flush()
    terminal = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()  # CUDA's refusal on a machine without a GPU is printed here
        finally:
            sys.stderr.flush()
            os.dup2(terminal, 2)
            os.close(terminal)
        sink.seek(0)
        return messages(sink.read().decode(errors="replace"))


def messages(text: str) -> list[str]:
    """Native log text split into messages: a line with absl's prefix starts one, other lines continue it."""
    found: list[str] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        if found and not _NEW_MESSAGE.match(line):
            found[-1] += " " + line.strip()
        else:
            found.append(line.strip())
    return found


def write_log(caught: list[warnings.WarningMessage], path: Path, startup: list[str] | None = None) -> dict:
    """One line per warning (category, where, message) and per TensorFlow start-up message in `path`; the summary:
    count, by category and the log's path (no file when nothing was caught)."""
    startup = startup or []
    by_category = Counter(w.category.__name__ for w in caught) + Counter({STARTUP: len(startup)})
    lines = [f"{w.category.__name__} {w.filename}:{w.lineno}: {_one_line(w.message)}\n" for w in caught]
    lines += [f"{STARTUP} stderr: {message}\n" for message in startup]
    if lines:
        path.write_text("".join(lines))
    return {"count": len(lines), "by_category": dict(by_category.most_common()), "log": str(path) if lines else ""}


def _one_line(message: Warning | str) -> str:
    """A warning's text on one line (setuptools' and Evidently's span several), so the log has one line each."""
    return " ".join(str(message).split())
