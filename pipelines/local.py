"""Local runner: the training and monitoring DAGs through kfp.local's SubprocessRunner in this Python environment.

Each run is recorded in <DERMPIPE_HOME>/runs/<run id>.json as it progresses (tasks with status, timing, cache
hits and output artifacts), which `dermpipe runs` and `dermpipe show` read, and in the lineage store
(<DERMPIPE_HOME>/lineage.sqlite: runs, tasks, artifacts, input/output edges), which `dermpipe lineage` and
`dermpipe ui` read.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import re
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dermpipe import config
from dermpipe.data.sources.registry import claim
from dermpipe.lineage import store
from dermpipe.model.training.watchdog import RUN_PID_ENV
from dermpipe.pipelines.task_logs import LogRouter, Observer, TaskLog


@dataclass
class TaskRecord:
    name: str
    status: str = "running"
    started: str = ""
    finished: str = ""
    seconds: float = 0.0
    cached: bool = False
    error: str = ""
    outputs: dict[str, Any] = field(default_factory=dict)
    log: str = ""  # $DERMPIPE_HOME/runs/<run id>/logs/<task>.log: everything the task printed
    warnings: int = 0  # warning lines in that log


@dataclass
class RunRecord:
    run_id: str
    pipeline: str
    status: str
    started: str
    params: dict[str, Any]
    pipeline_root: str
    finished: str = ""
    error: str = ""
    tasks: dict[str, TaskRecord] = field(default_factory=dict)
    reports: dict[str, str] = field(default_factory=dict)

    def artifact(self, task: str, output: str) -> dict[str, Any] | None:
        record = self.tasks.get(task)
        return record.outputs.get(output) if record else None

    def headline(self) -> dict[str, float]:
        metrics = self.artifact("evaluate", "metrics") or {}
        keys = ("balanced_accuracy", "accuracy", "macro_f1")
        return {k: metrics["metadata"][k] for k in keys if k in metrics.get("metadata", {})}


def runs_dir() -> Path:
    return config.home() / "runs"


# kfp.local runs a ParallelFor's iterations in threads: one writer at a time, each through its own temporary file
_RECORD_LOCK = threading.RLock()


def save_record(record: RunRecord) -> Path:
    with _RECORD_LOCK:
        path = runs_dir() / f"{record.run_id}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}-{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(asdict(record), indent=1, default=str))
        tmp.replace(path)
        return path


def load_record(run_id: str) -> RunRecord:
    path = runs_dir() / f"{run_id}.json"
    if not path.exists():
        known = ", ".join(r.run_id for r in list_records()[:5]) or "none yet"
        raise FileNotFoundError(f"no local run {run_id!r} in {runs_dir()}; recent runs: {known}")
    data = json.loads(path.read_text())
    data["tasks"] = {name: TaskRecord(**task) for name, task in data.get("tasks", {}).items()}
    return RunRecord(**data)


def list_records() -> list[RunRecord]:
    """Local runs, newest first."""
    if not runs_dir().exists():
        return []
    records = [load_record(p.stem) for p in runs_dir().glob("*.json")]
    return sorted(records, key=lambda r: r.started, reverse=True)


# (task, output) -> file name of the readable copy kept with the run record.
REPORTS = {("merge", "report"): "data-report.md", ("split", "report"): "split-report.md",
           ("evaluate", "report"): "evaluation.html", ("gate", "decision"): "gate-decision.md",
           ("explain", "gallery"): "gradcam.html", ("train", "curves"): "training-curves.html",
           ("drift", "report"): "drift-report.html", ("performance", "report"): "performance-report.html",
           ("trigger", "report"): "retrain-trigger.md", ("retrain", "request"): "retrain-request.md"}


def collect_reports(record: RunRecord) -> dict[str, str]:
    """Copy the run's reports next to its record with file extensions a browser or editor opens directly."""
    import shutil

    folder = runs_dir() / record.run_id
    reports = {}
    for (task, output), name in REPORTS.items():
        artifact = record.artifact(task, output)
        if artifact and Path(artifact["uri"]).is_file():
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(artifact["uri"], folder / name)
            reports[name.split(".")[0]] = str(folder / name)
    return reports


def source_fingerprint(source: str, demo_images: int) -> str:
    """Changes whenever the source's data does, so ingest's cache entry is reused only for unchanged input: the
    source kind's fingerprint (a folder's names, sizes and mtimes; a gs:// prefix's listing with md5/crc32c); kinds
    without one (kaggle:, isic:) by the source string (their ingest downloads only what changed; --no-cache
    re-checks)."""
    digest = hashlib.sha256(f"{source}|{demo_images}".encode())
    found = claim(source)
    if found and found[0].fingerprint:
        kind, location = found
        with contextlib.suppress(Exception):  # unreadable now: the ingest task reports the real error with its advice
            digest.update(kind.fingerprint(location).encode())
    return digest.hexdigest()[:16]


def pin_split_file(params: dict[str, Any]) -> None:
    """A split file as the tasks can open it (an absolute path: they run in other folders) and its sha256 pinned:
    a changed file misses the split's cache entry, and a file changed mid-run is refused by the split task."""
    from dermpipe.data.split_file import file_sha256

    given = str(params.get("split_file", "")).strip()
    if not given:
        return
    if "://" not in given:
        params["split_file"] = given = str(Path(given).expanduser().resolve())
    with contextlib.suppress(Exception):  # unreadable now: the split task reports the real error with its advice
        params.setdefault("split_file_sha256", file_sha256(given))


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _describe(value: Any) -> Any:
    from kfp import dsl

    if isinstance(value, dsl.Artifact):
        return {"type": type(value).schema_title, "uri": value.uri, "metadata": dict(value.metadata)}
    return value


_EXCEPTION_LINE = re.compile(r"^\s*([A-Za-z_.]*(Error|Exception|Interrupt)): (.+)$")


def failure_cause(lines: Iterable[str]) -> str:
    """The last `SomeError: message` line of a task's output (the exception that ended it), or ''."""
    causes = [m.group(1).rsplit(".", 1)[-1] + ": " + m.group(3) for m in map(_EXCEPTION_LINE.match, lines) if m]
    return causes[-1] if causes else ""


def _to_lineage(write: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Write to the lineage store; a store problem is reported but never fails the run."""
    try:
        return write(*args, **kwargs)
    except Exception as err:  # noqa: BLE001 - lineage is a record of the run, not part of it
        print(f"dermpipe: could not write lineage to {store.store_path()} ({write.__name__}): "
              f"{type(err).__name__}: {err}; the run goes on, `dermpipe lineage` will miss this step",
              file=sys.stderr)
        return None


def _task_inputs(task_spec: Any, io_store: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """A task's parameter values and input artifacts ({name: {type, uri, metadata}}), read as kfp.local resolves
    them; empty when kfp.local's internals do not offer them."""
    if task_spec is None or io_store is None:
        return {}, {}
    from kfp.local.orchestrator.orchestrator_utils import OrchestratorUtils

    try:
        arguments = OrchestratorUtils.make_task_arguments(task_inputs_spec=task_spec.inputs, io_store=io_store)
    except Exception:  # noqa: BLE001 - an input kfp.local cannot resolve fails the task itself, recorded there
        return {}, {}
    described = {name: _describe(value) for name, value in arguments.items()}
    inputs = {n: v for n, v in described.items() if isinstance(v, dict) and "uri" in v and "type" in v}
    params = {n: v for n, v in described.items() if n not in inputs}
    return params, inputs


def logs_dir(run_id: str) -> Path:
    """Where a local run's task logs go: $DERMPIPE_HOME/runs/<run id>/logs/<task>.log."""
    return runs_dir() / run_id / "logs"


@contextlib.contextmanager
def _recording(record: RunRecord, router: LogRouter) -> Iterator[None]:
    """Wrap kfp.local's per-task executor to record status, timing, cache hits, outputs and the log of every task."""
    from kfp.local.orchestrator import task_executor

    original = task_executor.execute_single_task

    def recorded(task_name: str, *args: Any, **kwargs: Any):
        resource = kwargs.get("pipeline_resource_name") or (args[1] if len(args) > 1 else "")
        # a ParallelFor iteration runs in a nested DAG "<run folder>/for-loop-N-iteration-I": same run, own record key
        run_folder, _, nested = resource.partition("/")
        kfp_name, task_name = task_name, iteration_task_name(task_name, nested)
        with _RECORD_LOCK:
            if run_folder and record.run_id != run_folder:
                # Adopt kfp.local's run folder name as the run id, so records and artifact paths agree.
                (runs_dir() / f"{record.run_id}.json").unlink(missing_ok=True)
                _to_lineage(store.rename_run, record.run_id, run_folder)
                record.run_id = run_folder
            task = TaskRecord(name=task_name, started=_now())
            record.tasks[task_name] = task
            save_record(record)
        params, inputs = _task_inputs(kwargs.get("task_spec"), kwargs.get("io_store"))
        task_id = _to_lineage(store.start_task, record.run_id, task_name, task.started, params, inputs)
        start = time.monotonic()
        router.start(task_name, logs_dir(record.run_id))
        try:
            outputs, status = original(kfp_name, *args, **kwargs)
        finally:
            log = router.stop()
        _finish_task(record, task, outputs, status.name, time.monotonic() - start, log)
        if task_id is not None:
            artifacts = {n: o for n, o in task.outputs.items() if isinstance(o, dict) and "uri" in o}
            _to_lineage(store.finish_task, task_id, status=task.status, finished=task.finished,
                        seconds=task.seconds, cached=task.cached, error=task.error, outputs=artifacts)
        if router.observer is not None:
            router.observer.task_finished(task, log.path if log else None, list(log.lines) if log else [])
        return outputs, status

    task_executor.execute_single_task = recorded
    try:
        yield
    finally:
        task_executor.execute_single_task = original


def iteration_task_name(task_name: str, nested: str) -> str:
    """`task_name`, or `<task_name>-<i>` inside iteration i of a ParallelFor (kfp.local names every iteration's task
    alike; the record, the task log and the lineage need one entry each)."""
    found = re.search(r"-iteration-(\d+)$", nested)
    return f"{task_name}-{found.group(1)}" if found else task_name


def _finish_task(record: RunRecord, task: TaskRecord, outputs: dict[str, Any] | None, status: str, seconds: float,
                 log: TaskLog | None) -> None:
    """Fill in a finished task's record (status, time, outputs, cache hit, its log) and save the run record."""
    if status != "SUCCESS" and log is not None:
        task.error = failure_cause(log.lines)
    task.seconds = round(seconds, 2)
    task.finished = _now()
    task.status = status.lower()
    task.outputs = {name: _describe(value) for name, value in (outputs or {}).items()}
    uris = [o["uri"] for o in task.outputs.values() if isinstance(o, dict) and "uri" in o]
    task.cached = bool(uris) and all(f"/{record.run_id}/" not in uri for uri in uris)
    if log is not None:
        task.log = str(log.path) if log.path else ""
        task.warnings = log.warnings
    save_record(record)


def run_local(params: dict[str, Any], *, pipeline_root: Path | None = None, cache: bool = True,
              observer: Observer | None = None, verbose: bool = True) -> RunRecord:
    """Run the training pipeline locally; returns the run record (status 'succeeded' or 'failed' with the error)."""
    from dermpipe.pipelines.training import PIPELINE_NAME, build_training_pipeline

    params = dict(params)
    params.setdefault("registry_root", str(config.default_registry_root()))
    source = str(params.get("source", "demo"))
    found = claim(source)
    if found and found[0].on_this_machine:  # the tasks run in other folders: pass the path they can open
        params["source"] = source = found[1]
    params.setdefault("source_fingerprint", source_fingerprint(source, int(params.get("demo_images", 400))))
    pin_split_file(params)
    if params.get("feedback_log_root"):  # new labels must reach a cached ingest
        from dermpipe.data.feedback import feedback_fingerprint

        params.setdefault("feedback_fingerprint", feedback_fingerprint(str(params["feedback_log_root"]),
                                                                       int(params.get("feedback_retention_days", 365))))
    # a sweep without folds builds the cross-validation DAG too, whose fold-plan then refuses folds < 2 by name
    cross_validation = int(params.get("folds", 0)) > 0 or bool(params.get("sweep"))
    pipeline = build_training_pipeline(placement=None, cross_validation=cross_validation)
    return run_pipeline(pipeline, PIPELINE_NAME, params, pipeline_root=pipeline_root, cache=cache, observer=observer,
                        verbose=verbose)


def run_pipeline(pipeline: Any, name: str, params: dict[str, Any], *, pipeline_root: Path | None = None,
                 cache: bool = True, observer: Observer | None = None, verbose: bool = True) -> RunRecord:
    """The one local runner, for the training and the monitoring DAG: kfp.local's SubprocessRunner in this Python
    environment, every task recorded (run record and lineage store) with its log in logs_dir(run id). `observer`
    sees each task start, progress and finish; `verbose` also streams every line to stdout, as kfp.local prints it.
    Returns the record; a failure is recorded in it (status 'failed', the failing task and its cause), not raised."""
    from kfp import local

    root = Path(pipeline_root or config.default_pipeline_root()).resolve()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d-%H-%M-%S-%f")
    record = RunRecord(run_id=f"{name}-{stamp}", pipeline=name, status="running", started=_now(),
                       params=dict(params), pipeline_root=str(root))
    save_record(record)
    _store_run(record, code=code_identity())
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # inherited by the task subprocesses
    os.environ[RUN_PID_ENV] = str(os.getpid())  # train exits when this process dies (watchdog.exit_with_parent_run)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), enable_caching=cache,
               raise_on_error=True)
    router = LogRouter(None, observer, echo=sys.stdout if verbose else None)
    try:
        with _recording(record, router), contextlib.redirect_stdout(router), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*non-Python base image.*")
            pipeline(**params)
        record.status = "succeeded"
    except Exception as err:  # the record must say what failed; the caller decides how to report it
        record.status = "failed"
        failed = [t for t in record.tasks.values() if t.status == "failure"]
        record.error = "; ".join(f"task {t.name}: {t.error or err}" for t in failed) or str(err)
    record.finished = _now()
    router.write_pipeline_log(logs_dir(record.run_id))
    record.reports = collect_reports(record)
    save_record(record)
    _store_run(record)
    return record


def _store_run(record: RunRecord, code: dict[str, Any] | None = None) -> None:
    """Insert the run into the lineage store (with the code that runs it), or update its status and end."""
    _to_lineage(store.record_run, record.run_id, pipeline=record.pipeline, status=record.status,
                started=record.started, params=record.params, pipeline_root=record.pipeline_root,
                finished=record.finished, error=record.error, code=code)


def code_identity() -> dict[str, Any]:
    """The code a local run runs: dermpipe's code version, and the git commit of its checkout (with whether it has
    uncommitted changes) when dermpipe runs from one."""
    from dermpipe.lineage.artifacts import code_version, git_identity

    return {"code_version": code_version(), **git_identity(Path(__file__).resolve().parents[1])}
