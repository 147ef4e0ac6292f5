"""A recorded override of the gate: deploy the model of a finished run that the gate did not bless, because a person
decided so (`dermpipe models push RUN --override-gate REASON`).

Why: a clinic piloting on its own small set (~50 test images) is refused by the gate, correctly: the interval is too
wide to tell. Deploying anyway must then be a human decision on the record, never a silent one: the reason is
required; who (OS user), when, why and the gate rules that failed go into the version's dermpipe.json
(`gate_override`) and into the lineage store (a `gate-override` run whose task read the model and pushed the
version); every answer served from such a version says `gate_override: true`. The push itself is the deploy stage's
(publish: export, infra validation, claim, commit, compare-and-swap promotion), and the version's test split is
frozen as its benchmark set like any first deployment.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from dermpipe import config

MODEL_OUTPUTS = (("train", "model"), ("cross-validate", "ensemble"))


class OverrideError(ValueError):
    """The override cannot be done; the message names the run or folder and what to do."""


@dataclass(frozen=True)
class Candidate:
    """What an override deploys: a model and what its run knew about it (gate: the decision's metadata)."""

    model_dir: Path
    run_id: str = ""
    training: dict = field(default_factory=dict)
    profile_dir: Path | None = None
    evaluation_uri: str = ""
    evaluation: dict = field(default_factory=dict)
    gate: dict | None = None
    deployed: dict | None = None
    test_split: Any = None  # the split's test artifact (path, metadata), frozen as the version's benchmark set
    raw: Any = None  # the ingest dataset artifact (its source names the set)
    registry_root: str = ""  # the registry the run deployed to (its registry_root parameter)


def _artifact(record: Any, task: str, output: str) -> Any:
    found = record.artifact(task, output)
    return None if not found else SimpleNamespace(path=found["uri"], uri=found["uri"],
                                                  metadata=dict(found.get("metadata") or {}))


def from_run(record: Any) -> Candidate:
    """The candidate of a local run record (pipelines.local.RunRecord: run_id, status, artifact(task, output))."""
    if record.status != "succeeded":
        raise OverrideError(f"run {record.run_id} did not finish (status {record.status}: {record.error or '-'}); "
                            f"only a finished run's model can be deployed")
    model = next((a for t, o in MODEL_OUTPUTS if (a := _artifact(record, t, o)) is not None), None)
    if model is None:
        raise OverrideError(f"run {record.run_id} has no trained model (no train or cross-validate output)")
    profile, evaluation = _artifact(record, "profile", "profile"), _artifact(record, "evaluate", "metrics")
    gate, deployed = _artifact(record, "gate", "decision"), _artifact(record, "deploy", "pushed")
    return Candidate(Path(model.path), record.run_id, model.metadata,
                     None if profile is None else Path(profile.path),
                     "" if evaluation is None else evaluation.uri, {} if evaluation is None else evaluation.metadata,
                     None if gate is None else gate.metadata, None if deployed is None else deployed.metadata,
                     _artifact(record, "split", "test"), _artifact(record, "ingest", "dataset"),
                     str((record.params or {}).get("registry_root") or ""))


def from_folder(folder: Path, records: list[Any]) -> Candidate:
    """The candidate of a model folder: its run's when a local run produced it, else the folder alone (no gate
    decision known; clinical.json and embedding_pca.npz are taken from the folder when it holds them)."""
    folder = folder.expanduser().resolve()
    if not (folder / "model.keras").is_file():
        raise OverrideError(f"{folder}: no model.keras there; give a local run id (`dermpipe runs`) or a run's "
                            f"model folder")
    for record in records:
        for task, output in MODEL_OUTPUTS:
            found = record.artifact(task, output)
            if found and Path(found["uri"]).resolve() == folder:
                return from_run(record)
    return Candidate(folder, profile_dir=folder)


def failed_rules(gate: dict | None) -> list[str]:
    """The gate's failed conditions with their reasons, in words (from the decision's metadata)."""
    if gate is None:
        return ["unknown: no gate decision was found for this model (a model folder no local run produced)"]
    failed = [name for name, ok in (gate.get("conditions") or {}).items() if not ok]
    reasons = [r for r in gate.get("reasons") or [] if r.endswith("failed")]
    return [*failed, *reasons] or ["none recorded as failed (see the run's gate decision)"]


def check(candidate: Candidate, reason: str) -> None:
    """Refuse an override without a reason, or of a model the gate blessed (its run deployed it already)."""
    if not reason.strip():
        raise OverrideError("--override-gate needs a reason (why this model is deployed although the gate did not "
                            "bless it); it is recorded with the version and in the lineage")
    if candidate.gate is not None and candidate.gate.get("blessed"):
        deployed = candidate.deployed or {}
        where = f" (version {deployed['version']}: {deployed.get('message', '')})" if "version" in deployed else ""
        raise OverrideError(f"the gate blessed run {candidate.run_id}: there is nothing to override; use the deploy "
                            f"the run already did{where}, or `dermpipe models promote VERSION`")


def os_user() -> str:
    """Who decided: the OS user running the command."""
    import getpass

    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no passwd entry (some containers) and no USER/LOGNAME
        return "unknown"


def override_fields(candidate: Candidate, reason: str, user: str) -> dict[str, object]:
    """The `gate_override` record: who, when, why, which run and the gate rules that failed."""
    return {"reason": reason.strip(), "user": user, "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "run_id": candidate.run_id, "model_uri": str(candidate.model_dir),
            "failed_rules": failed_rules(candidate.gate)}


def push_override(candidate: Candidate, reason: str, registry_root: str, model_name: str = config.MODEL_NAME,
                  user: str | None = None) -> dict[str, object]:
    """Push the candidate (reusing the deploy stage's publish), promote it over the current champion, record the
    override in dermpipe.json and the lineage; returns publish's result plus `gate_override`."""
    from functools import partial

    from dermpipe.deploy import registry
    from dermpipe.deploy.deploy import publish
    from dermpipe.deploy.evidence import freeze_run_test_split

    check(candidate, reason)
    override = override_fields(candidate, reason, user or os_user())
    record = {"model_name": model_name, "source_model_uri": str(candidate.model_dir), "training": candidate.training,
              "evaluation_uri": candidate.evaluation_uri, "evaluation": candidate.evaluation, "target": "local",
              "benchmark": str((candidate.gate or {}).get("benchmark") or ""), "gate_override": override}
    evidence = None if candidate.test_split is None else partial(freeze_run_test_split, candidate.test_split,
                                                                 candidate.raw, registry_root, model_name)
    champion = registry.champion(registry_root, model_name).version
    result = publish(candidate.model_dir, registry_root, model_name, record, candidate.profile_dir, champion,
                     evidence)
    result = {**result, "model_name": model_name, "gate_override": override}
    record_lineage(candidate, result)
    return result


def record_lineage(candidate: Candidate, result: dict[str, object]) -> str:
    """A `gate-override` run in the lineage store: its one task read the model and pushed the version (its output,
    a JSON file under $DERMPIPE_HOME/overrides, carries the override). Returns the lineage run id."""
    from dermpipe.lineage import store

    now = dt.datetime.now(dt.UTC)
    run_id = f"gate-override-{now.strftime('%Y-%m-%d-%H-%M-%S-%f')}"
    out = config.home() / "overrides" / f"{run_id}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=str))
    stamp = now.isoformat(timespec="seconds")
    override = result["gate_override"]
    store.record_run(run_id, pipeline="gate-override", status="succeeded", started=stamp, finished=stamp,
                     params={"source_run": candidate.run_id, **override}, pipeline_root="")
    task = store.start_task(run_id, "override-deploy", stamp, dict(override),
                            {"model": {"type": "system.Model", "uri": str(candidate.model_dir),
                                       "metadata": candidate.training}})
    store.finish_task(task, status="success", finished=stamp, seconds=0.0, cached=False, error="",
                      outputs={"pushed": {"type": "system.Model", "uri": str(out), "metadata": result}})
    return run_id
