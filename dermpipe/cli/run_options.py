"""`dermpipe run`'s pipeline options, derived from the pipeline's parameter table (dermpipe.pipelines.parameters).

One option per pipeline parameter: `--` + the name with dashes (`--train-quiet`), booleans as `--x/--no-x`, the
type and help of the stage dataclass field. Every derived option defaults to None, meaning "not given", so that the
profile and `--config` can fill it; `--help` shows the default profile's value (or the pipeline's own default).
Typer reads a command's options from `inspect.signature`, so the derived ones are added to the command function's
`__signature__` as keyword-only parameters.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import typer

from dermpipe.pipelines.parameters import ParamSpec, specs

# Pipeline parameters `dermpipe run` does not derive an option for, and why.
NOT_DERIVED = {
    "registry_root": "a run-only option: `--registry-root` [default: $DERMPIPE_HOME/registry], as before",
    "source_fingerprint": "the local runner computes it from the source's files (the ingest task's cache key)",
    "feedback_fingerprint": "the local runner computes it from the label store (the ingest task's cache key)",
    "split_file_sha256": "the local runner and submit compute it from --split-file (the split task's cache key)",
}


def option_flag(name: str) -> str:
    """`train_quiet` -> `--train-quiet`."""
    return "--" + name.replace("_", "-")


def shown_default(spec: ParamSpec, value: Any) -> str:
    """The default as `--help` shows it: a boolean as the flag that is on (`tta`, `no-tta`), text quoted if empty."""
    if spec.type is bool:
        return option_flag(spec.name)[2:] if value else "no-" + option_flag(spec.name)[2:]
    return repr(value) if value == "" else str(value)


def derived_option(spec: ParamSpec, shown: Any) -> inspect.Parameter:
    """The keyword-only parameter whose typer.Option Typer turns into the option of `spec`."""
    flag = option_flag(spec.name)
    decls = (f"{flag}/--no-{flag[2:]}",) if spec.type is bool else (flag,)
    option = typer.Option(None, *decls, help=spec.help, show_default=shown_default(spec, shown))
    return inspect.Parameter(spec.name, inspect.Parameter.KEYWORD_ONLY, default=option,
                             annotation=spec.type | None)


def derived_options(shown: Mapping[str, Any]) -> list[inspect.Parameter]:
    """Every derived option, in the table's order; `shown[name]` (else the pipeline default) is shown in --help."""
    return [derived_option(spec, shown.get(name, spec.default)) for name, spec in specs().items()
            if name not in NOT_DERIVED]


def with_derived_options(shown: Mapping[str, Any]) -> Callable[[Callable], Callable]:
    """Decorator: the function's own parameters (its **kwargs dropped) followed by the derived options."""

    def decorate(func: Callable) -> Callable:
        own = [p for p in inspect.signature(func, eval_str=True).parameters.values()
               if p.kind is not inspect.Parameter.VAR_KEYWORD]
        func.__signature__ = inspect.Signature([*own, *derived_options(shown)])
        return func

    return decorate


def given(options: Mapping[str, Any]) -> dict[str, Any]:
    """The derived options the user set (None: not given)."""
    names = set(specs()) - set(NOT_DERIVED)
    return {name: value for name, value in options.items() if name in names and value is not None}
