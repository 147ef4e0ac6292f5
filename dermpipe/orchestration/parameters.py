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
    return {name: _typed(name, value, known[name].get("parameterType", "STRING")) for name, value in params.items()}


def _typed(name: str, value: Any, kind: str) -> Any:
    try:
        if kind == "NUMBER_INTEGER" and not isinstance(value, bool) and float(value) == int(float(value)):
            return int(float(value))
        if kind == "NUMBER_DOUBLE" and not isinstance(value, bool):
            return float(value)
        if kind == "BOOLEAN" and isinstance(value, bool):
            return value
        if kind == "STRING":
            return value if isinstance(value, str) else json.dumps(value)
        if kind not in ("NUMBER_INTEGER", "NUMBER_DOUBLE", "BOOLEAN"):
            return value
    except (TypeError, ValueError):
        pass
    raise SubmitError(f"parameter {name}={value!r}: the pipeline expects {kind.lower().replace('number_', '')}")
