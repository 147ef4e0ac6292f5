"""Named parameter profiles of the training pipeline, and how `dermpipe run` resolves its parameters.

A profile is data: the pipeline parameters it sets differently from the pipeline's own defaults (the stage
dataclasses, see dermpipe.pipelines.parameters). Precedence, lowest first:

    pipeline defaults < profile < --config FILE.yaml < --param key=value < explicit flags
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

from dermpipe.orchestration.errors import SubmitError
from dermpipe.pipelines.parameters import ParamSpec, defaults, specs

PROFILES: dict[str, dict[str, Any]] = {
    # `dermpipe run`'s default: a demo run on a laptop CPU in minutes instead of GPU hours. A small CNN at 64 px
    # trains in seconds per epoch on the CPU; 12 epochs with patience 4 give it room to converge on the demo data.
    "laptop": {"epochs": 12, "image_size": 64, "backbone": "simple_cnn", "patience": 4},
    # no overrides: the pipeline's own defaults (efficientnet_b0 at 224 px), what a cluster (KFP/Vertex) run uses
    "cluster": {},
}
DEFAULT_PROFILE = "laptop"
STRUCTURED = ("sweep",)  # text parameters a config file may give as YAML (a list), passed on as JSON
ProfileName = Literal[tuple(PROFILES)]  # `--profile` accepts exactly these names (Typer makes a Choice of it)


def profile_values(profile: str) -> dict[str, Any]:
    """The overrides of the named profile; an unknown name lists the known ones."""
    if profile not in PROFILES:
        raise SubmitError(f"--profile {profile!r}: unknown profile; choose one of {', '.join(PROFILES)}")
    return dict(PROFILES[profile])


def typed_value(spec: ParamSpec, value: Any, origin: str) -> Any:
    """`value` as the parameter's type, or an error naming `origin` (the file or flag), the parameter and the type.

    YAML reads `1e-4` as text and `20` as an int where a float is meant, so numbers convert; booleans never do.
    A structured parameter (the sweep's list of configurations) written as YAML in a config file becomes its JSON
    text, the form the pipeline parameter takes."""
    kind = spec.type
    if spec.name in STRUCTURED and isinstance(value, list):
        return json.dumps(value)
    if kind is bool and isinstance(value, bool):
        return value
    if kind is int and isinstance(value, int | float) and not isinstance(value, bool) and float(value).is_integer():
        return int(value)
    if kind is float and not isinstance(value, bool):
        try:
            return float(value)
        except (TypeError, ValueError):
            pass
    if kind is str and isinstance(value, str | int | float) and not isinstance(value, bool):
        return str(value)
    raise SubmitError(f"{origin}: parameter {spec.name}={value!r} is not a {kind.__name__} "
                      f"(default {spec.default!r}; {spec.help})")


def checked(values: Mapping[str, Any], origin: str) -> dict[str, Any]:
    """`values` typed against the pipeline's parameters; unknown names are refused with the valid ones listed
    (a typo would otherwise be ignored, and the run would silently use the default)."""
    known = specs()
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise SubmitError(f"{origin}: unknown pipeline parameter(s) {', '.join(unknown)}; "
                          f"valid names: {', '.join(sorted(known))}")
    return {name: typed_value(known[name], value, origin) for name, value in values.items()}


def given_params(profile: str, config: Mapping[str, Any] | None = None, explicit: Mapping[str, Any] | None = None,
                 *, config_origin: str = "--config") -> dict[str, Any]:
    """The parameters set by the profile, then the config file, then explicit flags (each overriding the last)."""
    return {**checked(profile_values(profile), f"profile {profile}"),
            **checked(config or {}, config_origin), **checked(explicit or {}, "command line")}


def resolve_params(profile: str, config: Mapping[str, Any] | None = None,
                   explicit: Mapping[str, Any] | None = None, *, config_origin: str = "--config") -> dict[str, Any]:
    """Every pipeline parameter's value: defaults < profile < config < explicit."""
    return {**defaults(), **given_params(profile, config, explicit, config_origin=config_origin)}
