"""`dermpipe run`'s progress off a terminal (plain lines, one per state change) and the log router under it."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from types import SimpleNamespace

from dermpipe.cli.progress import PlainProgress, TaskState, make_progress
from dermpipe.componentkit import CountProgress, report_progress
from dermpipe.pipelines.task_logs import LogRouter, parse_progress


def _task(name: str, status: str = "success", cached: bool = False, seconds: float = 1.25):
    return SimpleNamespace(name=name, status=status, cached=cached, seconds=seconds)


def test_plain_output_is_one_line_per_state_change():
    out = io.StringIO()
    progress = make_progress(out)  # a StringIO is not a terminal
    assert type(progress) is PlainProgress
    progress.task_started("ingest")
    progress.task_finished(_task("ingest", cached=True, seconds=0.4), None, [])
    progress.task_started("train")
    for epoch in (1, 2, 3):
        progress.task_progress("train", {"step": "train head", "epoch": epoch, "epochs": 12,
                                         "val_balanced_accuracy": 0.1 * epoch})
    progress.task_progress("train", {"resumed_at": 4, "epochs": 12})
    progress.task_finished(_task("train", seconds=61.0), Path("/h/runs/r/logs/train.log"), [])
    assert out.getvalue().splitlines() == ["ingest: running", "ingest: cached in 0.4s (cache hit)", "train: running",
                                           "train: resumed at epoch 4/12", "train: succeeded in 61.0s"]


def test_a_failed_task_shows_its_last_lines_and_its_log():
    out = io.StringIO()
    progress = PlainProgress(out)
    progress.task_started("merge")
    tail = [f"line {i}" for i in range(30)] + ["", "SchemaError: gt.csv: missing column(s) ['UNK']"]
    progress.task_finished(_task("merge", status="failure"), Path("/h/runs/r/logs/merge.log"), tail)
    lines = out.getvalue().splitlines()
    assert lines[:3] == ["merge: running", "merge: failed in 1.2s", "merge failed; its last lines:"]
    assert lines[3] == "  | line 16" and lines[-2] == "  | SchemaError: gt.csv: missing column(s) ['UNK']"
    assert lines[-1] == "  full log: /h/runs/r/logs/merge.log" and len(lines) == 3 + 15 + 1


def test_task_state_details():
    train = TaskState("train", progress={"step": "train head", "epoch": 3, "epochs": 12, "val_balanced_accuracy": .5})
    assert (train.detail(), train.fraction()) == ("train head epoch 3/12  val BMA 0.500", 0.25)
    merge = TaskState("merge", progress={"step": "validating", "done": 120, "total": 400, "unit": "images"})
    assert (merge.detail(), merge.fraction()) == ("validating 120/400 images", 0.3)


def test_the_router_files_each_line_under_its_task_and_hands_progress_to_the_observer(tmp_path):
    seen: list[tuple] = []
    observer = SimpleNamespace(task_started=lambda name: seen.append(("start", name)),
                               task_progress=lambda name, fields: seen.append((name, fields)))
    echo = io.StringIO()
    router = LogRouter(None, observer, echo=echo)
    router.write("kfp: pipeline starts\n")
    router.start("merge", tmp_path / "logs")
    router.write("INFO executor input {...}\nUserWarning: something")
    router.write(" odd\n")
    router.write("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")
    with contextlib.redirect_stdout(router):
        counter = CountProgress("validating", 2, every=0.0)
        counter.update()
        counter.update()
    log = router.stop()
    router.write("kfp: pipeline ends\n")
    assert log.path == tmp_path / "logs" / "merge.log" and log.warnings == 1  # absl's start-up line is no warning
    text = log.path.read_text().splitlines()
    assert text[:2] == ["INFO executor input {...}", "UserWarning: something odd"] and len(text) == 5
    assert seen == [("start", "merge"), ("merge", {"done": 1, "step": "validating", "total": 2, "unit": "images"}),
                    ("merge", {"done": 2, "step": "validating", "total": 2, "unit": "images"})]
    assert router.write_pipeline_log(tmp_path / "logs").read_text() == "kfp: pipeline starts\nkfp: pipeline ends\n"
    assert echo.getvalue().startswith("kfp: pipeline starts\nINFO executor input")  # --verbose: everything


def test_progress_lines_round_trip_and_garbage_is_not_progress(capsys):
    report_progress(step="train head", epoch=2, epochs=5, val_balanced_accuracy=None)
    line = capsys.readouterr().out.strip()
    assert parse_progress("    " + line) == {"epoch": 2, "epochs": 5, "step": "train head",
                                              "val_balanced_accuracy": None}
    assert parse_progress("[dermpipe-progress] {not json") is None and parse_progress("epoch 2/5") is None
