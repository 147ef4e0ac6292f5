"""Named parameter profiles of the training pipeline, and how `dermpipe run` resolves its parameters.

A profile is data: the pipeline parameters it sets differently from the pipeline's own defaults (the stage
dataclasses, see dermpipe.pipelines.parameters). Precedence, lowest first:

    pipeline defaults < profile < --config FILE.yaml < --param key=value < explicit flags
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from dermpipe.orchestration.errors import SubmitError
from dermpipe.orchestration.parameters import typed
from dermpipe.pipelines.parameters import ParamSpec, defaults, specs

PROFILES: dict[str, dict[str, Any]] = {
    # `dermpipe run`'s default: a demo run on a laptop CPU in minutes instead of GPU hours. A small CNN at 64 px
    # trains in seconds per epoch on the CPU; 12 epochs with patience 4 give it room to converge on the demo data.
    "laptop": {"epochs": 12, "image_size": 64, "backbone": "simple_cnn", "patience": 4},
    # no overrides: the pipeline's own defaults (efficientnet_b0 at 224 px), what a cluster (KFP/Vertex) run uses
    "cluster": {},
    # The laptop recipe sweep's best (docs/stages/training.md): a small from-scratch ResNet, a cosine schedule run to
    # its end (patience = epochs; the best epoch's weights are kept) and square-root class weights, which keep most
    # of the majority class's accuracy. About 40 s an epoch on the 7,957-image HAM10000 kit on 2 shared CPU cores.
    "laptop_resnet": {"epochs": 20, "image_size": 64, "backbone": "small_resnet", "patience": 20,
                      "lr_schedule": "cosine", "class_balance": "sqrt_weights"},
}
DEFAULT_PROFILE = "laptop"
ProfileName = Literal[tuple(PROFILES)]  # `--profile` accepts exactly these names (Typer makes a Choice of it)


def profile_values(profile: str) -> dict[str, Any]:
    """The overrides of the named profile; an unknown name lists the known ones."""
    if profile not in PROFILES:
        raise SubmitError(f"--profile {profile!r}: unknown profile; choose one of {', '.join(PROFILES)}")
    return dict(PROFILES[profile])


def typed_value(spec: ParamSpec, value: Any, origin: str) -> Any:
    """`value` as the parameter's type (the one rule, dermpipe.orchestration.parameters.typed), or an error naming
    `origin` (the file or flag), the parameter, its type, default and help."""
    return typed(spec.name, value, spec.type, origin, hint=f"default {spec.default!r}; {spec.help}")


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
