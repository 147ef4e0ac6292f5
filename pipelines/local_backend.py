"""The `local` Backend: the training pipeline through the local runner (dermpipe.pipelines.local) on this machine.

Registered with dermpipe.orchestration.backend as the entry point `local` of `dermpipe.backends` (pyproject.toml):
the orchestration layer sits below this one and finds it there. `submit` runs the pipeline in a child process of
this module (a running kfp.local task cannot start another kfp.local pipeline in its own process), which writes the
run's result as JSON: run id, status, error and outputs (the deployed version, its registry folder, the test
figures). Nothing is parsed from printed text. `compile_training` is the entry point `training` of
`dermpipe.compilers`: the compiled training pipeline the kfp and vertex retraining submit.

    python -m dermpipe.pipelines.local_backend run PARAMS.json RESULT.json
    python -m dermpipe.pipelines.local_backend compile KIND OUT.yaml
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from dermpipe import config
from dermpipe.orchestration.backend import Backend, BackendSettings, RunStatus, ScheduleInfo
from dermpipe.orchestration.errors import SubmitError
from dermpipe.pipelines.local import RunRecord, list_records, load_record

# Parameters the local runner computes when absent (its cache keys, the default registry): not filled with the
# pipeline's defaults, as `dermpipe run` does not fill them either.
RUNNER_FILLS = ("registry_root", "source_fingerprint", "feedback_fingerprint", "split_file_sha256")
NO_SCHEDULES = ("the local backend has no schedules: run `dermpipe monitor --retrain` from cron, or schedule on "
                "--backend kfp or vertex")


def compile_training(kind: str, out: Path) -> Path:
    """The training pipeline compiled for `kind` (kfp | vertex) with its placement and the default images, as
    `dermpipe compile --pipeline training --backend KIND` writes it. In a child process: inside a running task
    (the monitoring DAG's retrain) kfp.dsl cannot build components, and the child leaves that task's marker out."""
    command = [sys.executable, "-m", __name__, "compile", kind, str(out)]
    done = subprocess.run(command, env=_child_env(), capture_output=True, text=True, check=False)
    if done.returncode != 0 or not out.exists():
        raise RuntimeError(f"exit {done.returncode}: {(done.stderr or done.stdout)[-2000:]}")
    return out


def _compile_here(kind: str, out: Path) -> Path:
    from dermpipe.pipelines.compile import compile_pipeline
    from dermpipe.pipelines.placement import Placement

    return compile_pipeline("training", out, base_image=config.image("base", None, None),
                            gpu_image=config.image("trainer-gpu", None, None), placement=Placement.for_backend(kind))


def run_params(given: dict[str, Any]) -> dict[str, Any]:
    """What the local run gets: the pipeline's own defaults (profile `cluster`) under the given parameters, which are
    checked by name and type first (a SubmitError names the wrong one)."""
    from dermpipe.pipelines.parameters import defaults
    from dermpipe.pipelines.profiles import given_params

    checked = given_params("cluster", given, config_origin="retraining parameters")
    return {**{k: v for k, v in defaults().items() if k not in RUNNER_FILLS}, **checked}


def outputs(record: RunRecord) -> dict[str, Any]:
    """A run's outputs callers act on: the deployed version and its registry folder (when the gate blessed it),
    the test figures, the trained model."""
    found: dict[str, Any] = {"test": record.headline()}
    model = record.artifact("train", "model")
    if model:
        found["model"] = model["uri"]
    pushed = (record.artifact("deploy", "pushed") or {}).get("metadata", {})
    if pushed.get("version") is not None:  # KFP metadata numbers are floats
        found.update(deployed_version=int(pushed["version"]), registry_uri=str(pushed.get("registry_uri", "")))
    return found


def status_of(record: RunRecord) -> RunStatus:
    return RunStatus(run_id=record.run_id, name=record.pipeline, state=record.status, created=record.started,
                     finished=record.finished, tasks={n: t.status for n, t in record.tasks.items()},
                     error=record.error, outputs=outputs(record))


def _child_env() -> dict[str, str]:
    """This environment minus kfp.local's task marker, so the child runs a pipeline instead of acting as a task."""
    return {k: v for k, v in os.environ.items() if k != "_KFP_RUNTIME"}


class LocalBackend(Backend):
    """Runs on this machine: submit waits for the run's end (there is no service to poll) and returns its result."""

    kind = "local"

    def __init__(self, settings: BackendSettings | None = None) -> None:
        self.settings = settings or BackendSettings()

    def submit(self, package: Path | None, params: dict[str, Any], *, name: str, experiment: str, cache: bool = True
               ) -> RunStatus:
        """Run the training pipeline (built from its DAG factory: `package` is not needed and not read)."""
        with tempfile.TemporaryDirectory(prefix=f"{name}-") as tmp:
            given, result = Path(tmp) / "params.json", Path(tmp) / "result.json"
            given.write_text(json.dumps({"params": params, "cache": cache}))
            done = subprocess.run([sys.executable, "-m", __name__, "run", str(given), str(result)], env=_child_env(),
                                  stdout=subprocess.DEVNULL, check=False)
            if not result.exists():
                raise SubmitError(f"the local training process exited {done.returncode} without a result; its error "
                                  "is above (stderr)")
            return RunStatus(**json.loads(result.read_text()))

    def status(self, run_id: str) -> RunStatus:
        return status_of(load_record(run_id))

    def runs(self, limit: int = 20, experiment: str | None = None) -> list[RunStatus]:
        return [status_of(r) for r in list_records()[:limit]]

    def create_schedule(self, package: Path, params: dict[str, Any], *, name: str, cron: str, experiment: str
                        ) -> ScheduleInfo:
        raise SubmitError(NO_SCHEDULES)

    def schedules(self) -> list[ScheduleInfo]:
        return []

    def pause_schedule(self, key: str) -> ScheduleInfo:
        raise SubmitError(NO_SCHEDULES)

    def resume_schedule(self, key: str) -> ScheduleInfo:
        raise SubmitError(NO_SCHEDULES)

    def delete_schedule(self, key: str) -> ScheduleInfo:
        raise SubmitError(NO_SCHEDULES)


def run_child(given: dict[str, Any]) -> RunStatus:
    """The child's work: check the parameters as every stage would (pre-flight), run, and say what came of it."""
    from dermpipe.pipelines.local import run_local
    from dermpipe.pipelines.preflight import PreflightError, preflight

    try:
        params = run_params(given["params"])
        preflight(params, local=True)
    except (SubmitError, PreflightError) as err:
        return RunStatus(run_id="", name="", state="failed", error=f"nothing was started: {err}")
    return status_of(run_local(params, cache=bool(given.get("cache", True)), verbose=False))


def main(argv: list[str]) -> int:
    """`run PARAMS.json RESULT.json` (the result: a RunStatus as JSON) or `compile KIND OUT.yaml`."""
    from dataclasses import asdict

    if argv[:1] == ["compile"] and len(argv) == 3:
        _compile_here(argv[1], Path(argv[2]))
        return 0
    if argv[:1] == ["run"] and len(argv) == 3:
        status = run_child(json.loads(Path(argv[1]).read_text()))
        Path(argv[2]).write_text(json.dumps(asdict(status), default=str))
        return 0 if status.state == "succeeded" else 1
    print(f"usage: python -m {__name__} run PARAMS.json RESULT.json | compile KIND OUT.yaml", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
