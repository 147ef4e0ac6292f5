"""Pipeline parameters from `--config FILE.yaml` and `--param key=value`, typed against a compiled package.

The same file serves `dermpipe run`, `submit` and `schedule create`: a mapping of pipeline parameter: value, or one
under `parameters:`.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from dermpipe.orchestration.errors import SubmitError

_EXPONENT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def parse_param(pair: str) -> tuple[str, Any]:
    """`key=value` -> (key, typed value): numbers, true/false and lists are read as YAML, anything else is text."""
    key, sep, raw = pair.partition("=")
    if not sep or not key.strip():
        raise SubmitError(f"--param {pair!r}: expected key=value, e.g. --param epochs=20 --param source=gs://b/isic")
    value = yaml.safe_load(raw) if raw.strip() else ""
    if value is None or isinstance(value, dt.date):  # `null`, `~`, dates: keep what the user typed
        value = raw
    if isinstance(value, str) and _EXPONENT.fullmatch(value.strip()):  # 1e-4: YAML 1.1 reads it as text
        value = float(value)
    return key.strip(), value


def load_params(config_file: Path | None = None, pairs: Iterable[str] = ()) -> dict[str, Any]:
    """Parameters from a YAML file (a mapping, or a mapping under `parameters:`), then `--param k=v` on top."""
    params: dict[str, Any] = {}
    if config_file is not None:
        try:
            loaded = yaml.safe_load(Path(config_file).read_text()) or {}
        except FileNotFoundError as err:
            raise SubmitError(f"parameter file {config_file} not found") from err
        except yaml.YAMLError as err:
            raise SubmitError(f"parameter file {config_file} is not valid YAML: {err}") from err
        if isinstance(loaded, dict) and isinstance(loaded.get("parameters"), dict):
            loaded = loaded["parameters"]
        if not isinstance(loaded, dict):
            raise SubmitError(f"parameter file {config_file}: expected a mapping of parameter: value, "
                              f"found {type(loaded).__name__}")
        params.update({str(k): v for k, v in loaded.items()})
    for pair in pairs:
        key, value = parse_param(pair)
        params[key] = value
    return params


def package_parameters(package: Path) -> dict[str, dict]:
    """The pipeline's input parameters as compiled (name -> {parameterType, defaultValue...})."""
    first = next(d for d in yaml.safe_load_all(Path(package).read_text()) if d)
    return first.get("root", {}).get("inputDefinitions", {}).get("parameters", {})


def pipeline_name(package: Path) -> str:
    """The pipeline's name as compiled into the IR YAML (pipelineInfo.name): the KFP pipeline a version is filed
    under, and the stem of default run names."""
    first = next(d for d in yaml.safe_load_all(Path(package).read_text()) if d)
    return first["pipelineInfo"]["name"]


def check_params(params: dict[str, Any], package: Path) -> dict[str, Any]:
    """The parameters converted to the types the pipeline declares; refuses names it does not declare (a typo would
    otherwise be ignored or rejected late by the server) and values that do not fit the type."""
    known = package_parameters(package)
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise SubmitError(f"{package}: unknown pipeline parameter(s) {', '.join(unknown)}; "
                          f"the pipeline takes: {', '.join(sorted(known))}")
    return {name: typed(name, value, KFP_TYPES.get(known[name].get("parameterType", "STRING")), str(package))
            for name, value in params.items()}


# The compiled package's parameter types (parameterType) as Python types; other kinds (STRUCT, LIST) pass as they are
KFP_TYPES: dict[str, type] = {"NUMBER_INTEGER": int, "NUMBER_DOUBLE": float, "BOOLEAN": bool, "STRING": str}
_EXPECTED = {int: "a whole number", float: "a number", bool: "true or false", str: "text"}


def typed(name: str, value: Any, kind: type | None, origin: str = "", hint: str = "") -> Any:
    """`value` as the parameter's type: the one rule of `dermpipe run`, `submit` and `schedule create`.

    A boolean only from a boolean (`yes` in a file must not switch a flag on); a whole number also from 20.0 or
    "20"; a number also from text (YAML 1.1 reads 1e-4 as text); text from text or a number, and from a list or
    mapping as its JSON (a structured parameter: the sweep's configurations). kind None: passed unchanged.
    A SubmitError names `origin` (the file, the flag, the package), the parameter, the value and what fits."""
    number = _number(value)
    if kind is None or (kind is bool and isinstance(value, bool)):
        return value
    if kind is int and number is not None and number.is_integer():
        return int(number)
    if kind is float and number is not None:
        return number
    if kind is str and not isinstance(value, bool):
        if isinstance(value, list | dict):
            return json.dumps(value)
        if isinstance(value, str | int | float):
            return str(value)
    where = f"{origin}: " if origin else ""
    raise SubmitError(f"{where}parameter {name}={value!r} is not a {kind.__name__}: the pipeline expects "
                      f"{_EXPECTED.get(kind, kind.__name__)}" + (f" ({hint})" if hint else ""))


def _number(value: Any) -> float | None:
    """A number, or text that reads as one; None for anything else (booleans included)."""
    if isinstance(value, bool):
        return None
    try:
        return float(value) if isinstance(value, int | float | str) else None
    except ValueError:
        return None
