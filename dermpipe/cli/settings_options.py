"""Options generated from a settings dataclass, the way `dermpipe run`'s come from the stage dataclasses
(run_options.py): `dermpipe serve`'s from dermpipe.serving.settings.Settings, `dermpipe monitor`'s from the drift and
performance stages' parameter dataclasses. The default and the help live in the dataclass field only (declared with
dermpipe.componentkit.param); a field without help is no option. tests/architecture/test_settings_agreement.py
checks the generated options and the monitoring pipeline's signatures against the dataclasses.

A field kept in one unit and shown in a friendlier one (bytes as MiB) is `Scaled`: the option's name and factor.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import typer


@dataclass(frozen=True)
class Scaled:
    """The option `name` sets the field in units of `factor` (field value = option value * factor)."""

    name: str
    factor: int


@dataclass(frozen=True)
class OptionSpec:
    """One generated option: its name, the field it sets, its type, default and help."""

    name: str
    field: str
    type: type
    default: Any
    help: str
    factor: int = 1


def option_specs(cls: type, scaled: Mapping[str, Scaled] | None = None) -> list[OptionSpec]:
    """An OptionSpec for each field of `cls` that has help, in field order."""
    hints = typing.get_type_hints(cls)
    found = []
    for f in dataclasses.fields(cls):
        if "help" not in f.metadata:
            continue
        unit = (scaled or {}).get(f.name)
        if unit is None:
            found.append(OptionSpec(f.name, f.name, hints[f.name], f.default, f.metadata["help"]))
        else:
            found.append(OptionSpec(unit.name, f.name, float, f.default / unit.factor, f.metadata["help"],
                                    unit.factor))
    return found


def option_parameter(spec: OptionSpec) -> inspect.Parameter:
    """The keyword-only parameter whose typer.Option Typer turns into the option of `spec`."""
    flag = "--" + spec.name.replace("_", "-")
    decls = (f"{flag}/--no-{flag[2:]}",) if spec.type is bool else (flag,)
    option = typer.Option(spec.default, *decls, help=spec.help)
    return inspect.Parameter(spec.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=spec.type)


def with_options(*groups: list[OptionSpec]) -> Callable[[Callable], Callable]:
    """Decorator: the function's own parameters (its **kwargs dropped) followed by the groups' options."""

    def decorate(func: Callable) -> Callable:
        own = [p for p in inspect.signature(func, eval_str=True).parameters.values()
               if p.kind is not inspect.Parameter.VAR_KEYWORD]
        func.__signature__ = inspect.Signature([*own, *(option_parameter(s) for g in groups for s in g)])
        return func

    return decorate


def field_values(specs: list[OptionSpec], options: Mapping[str, Any]) -> dict[str, Any]:
    """The dataclass keyword arguments the options set (scaled options back in the field's unit)."""
    values = {}
    for spec in specs:
        value = options[spec.name]
        values[spec.field] = value if spec.factor == 1 else int(value * spec.factor)
    return values
