"""Pre-flight: the training pipeline's parameters and source checked before anything starts.

`dermpipe run` (and `submit`) build each stage's parameter dataclass from the pipeline parameters (the table in
dermpipe.pipelines.parameters) and call its own `check()`, the same code the stage runs: a mistyped source, an
unknown backbone or an impossible split answers in milliseconds with the stage's message instead of failing inside
a task after the pipeline has started. No check is written here. This module and the checks it calls import neither
TensorFlow nor kfp (tests/pipelines/test_preflight.py holds them to that), so it costs about what `--help` does.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from dermpipe.pipelines.parameters import PIPELINE_PARAMETERS


class PreflightError(ValueError):
    """One or more stages would refuse the parameters; the message has one line per problem, prefixed by stage."""


def stage_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Each stage's parameter dataclass as the pipeline would build it from `params` (defaults for the rest)."""
    fields: dict[tuple[str, type], dict[str, Any]] = {}
    for name, targets in PIPELINE_PARAMETERS.items():
        for target in targets:
            values = fields.setdefault((target.stage, target.params), {})
            if name in params:
                values[target.field] = params[name]
    return {stage: cls(**values) for (stage, cls), values in fields.items()}


def _check(stage: str, instance: Any, local: bool) -> str:
    """The stage's refusal as one line, or '' (a dataclass without `check` has nothing to refuse early)."""
    check = getattr(instance, "check", None)
    if check is None:
        return ""
    try:  # a check that reads this machine's files (ingest's source, split's file) is told where the run happens
        check(local=local) if "local" in inspect.signature(check).parameters else check()
    except ValueError as err:
        return f"{stage}: {err}"
    return ""


def problems(params: Mapping[str, Any], *, local: bool = True) -> list[str]:
    """Every stage's refusal of `params`, in pipeline order. `local`: the run happens on this machine, so a source
    folder (or a split file) must exist here and the credentials must be this machine's (a cluster run brings its
    own, and reads a split file from gs://)."""
    found = [_check(stage, instance, local) for stage, instance in stage_params(params).items()]
    return [line for line in found if line]


def preflight(params: Mapping[str, Any], *, local: bool = True) -> None:
    """Raise PreflightError naming every problem, or return when every stage would accept the parameters."""
    found = problems(params, local=local)
    if found:
        raise PreflightError("\n".join(found))

