"""`dermpipe serve` and `dermpipe monitor` options agree with the dataclasses they are generated from (#30 point 5),
and so do the monitoring DAG's and its drift and performance components' literal signatures (KFP ships their
source, so they cannot be generated: this test keeps them honest, like test_parameter_agreement does for `run`)."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import typer

from dermpipe.cli import monitor as monitor_cli
from dermpipe.cli import serve as serve_cli
from dermpipe.cli.main import app
from dermpipe.cli.settings_options import OptionSpec
from dermpipe.components.drift import drift
from dermpipe.components.performance import performance
from dermpipe.monitoring.drift.stage import DriftParams
from dermpipe.monitoring.performance.stage import PerformanceParams
from dermpipe.serving.settings import MIB, Settings

# Fields that are no option, and why (a new field must be one or the other: a forgotten help would hide it).
NOT_OPTIONS = {
    Settings: {"registry_root": "--registry-root: default $DERMPIPE_HOME/registry, read when the command runs",
               "log_root": "--log-root: default $DERMPIPE_HOME/predictions, 'none' turns the log off",
               "grpc_host": "gRPC listens where --host says in a container; code sets it"},
    PerformanceParams: {"confidence": "the gate's interval level, not a monitoring choice",
                        "seed": "the bootstrap's seed, fixed for reproducible reports"},
    DriftParams: {},
}


def _command(name: str) -> Any:
    return typer.main.get_command(app).commands[name]


def option_disagreements(cls: type, specs: list[OptionSpec], command: Any) -> list[str]:
    """Where the command's generated options differ from the fields of `cls` they come from (empty: they agree)."""
    options = {p.name: p for p in command.params}
    problems = []
    for spec in specs:
        value = getattr(cls(registry_root="") if cls is Settings else cls(), spec.field)
        option = options.get(spec.name)
        if option is None:
            problems.append(f"{cls.__name__}.{spec.field}: no option --{spec.name.replace('_', '-')}")
        elif option.default != (value if spec.factor == 1 else value / spec.factor) or \
                option.type_descriptor.annotation is not spec.type:
            problems.append(f"{cls.__name__}.{spec.field}: option {option.default!r} "
                            f"({option.type_descriptor.annotation}), field {value!r} / {spec.factor}")
    unlisted = {f.name for f in dataclasses.fields(cls)} - {s.field for s in specs} - set(NOT_OPTIONS[cls])
    return problems + [f"{cls.__name__}.{name}: neither an option (no help) nor in NOT_OPTIONS" for name in unlisted]


def signature_disagreements(cls: type, func: Callable, where: str) -> list[str]:
    """Where `func`'s literal parameters differ from the option fields of `cls` (name, type, default)."""
    parameters: Mapping[str, inspect.Parameter] = inspect.signature(func, eval_str=True).parameters
    problems = []
    for f in dataclasses.fields(cls):
        if "help" not in f.metadata:
            continue
        got = parameters.get(f.name)
        if got is None:
            problems.append(f"{f.name}: missing from {where}")
        elif (got.annotation, got.default) != (type(f.default), f.default):
            problems.append(f"{f.name}: {where} has {got.annotation.__name__} = {got.default!r}, "
                            f"{cls.__name__} says {type(f.default).__name__} = {f.default!r}")
    return problems


def _monitoring_pipeline() -> Callable:
    from dermpipe.pipelines.monitoring import build_monitoring_pipeline

    return build_monitoring_pipeline(None).pipeline_func


def test_serve_options_are_the_settings_fields():
    assert option_disagreements(Settings, serve_cli.SERVE_OPTIONS, _command("serve")) == []
    options = {p.name: p for p in _command("serve").params}
    assert options["max_body_mb"].default == 20.0 and options["grpc_max_message_mb"].default == 64.0
    assert Settings(registry_root="").max_body_bytes == 20 * MIB


def test_monitor_options_are_the_drift_and_performance_fields():
    command = _command("monitor")
    assert option_disagreements(DriftParams, monitor_cli.DRIFT_OPTIONS, command) == []
    assert option_disagreements(PerformanceParams, monitor_cli.PERFORMANCE_OPTIONS, command) == []


def test_the_monitoring_dag_and_components_take_the_same_parameters():
    assert signature_disagreements(DriftParams, drift.python_func, "component drift") == []
    assert signature_disagreements(PerformanceParams, performance.python_func, "component performance") == []
    for cls in (DriftParams, PerformanceParams):
        assert signature_disagreements(cls, _monitoring_pipeline(), "the monitoring pipeline") == []


def test_a_drifted_default_is_reported_by_name():
    def stand_in(min_samples: int = 31, drift_share: float = 0.5, num_method: str = "auto",
                 num_threshold: float = 0.0, cat_method: str = "auto"):
        """The drift component with a hand-edited default and a parameter lost."""

    assert signature_disagreements(DriftParams, stand_in, "component drift") == [
        "min_samples: component drift has int = 31, DriftParams says int = 30",
        "cat_threshold: missing from component drift"]


def test_options_reach_the_settings_the_server_gets(monkeypatch):
    got = {}
    monkeypatch.setattr("dermpipe.serving.app.serve", lambda settings, **kw: got.update(settings=settings, **kw))
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, ["serve", "--registry-root", "/r", "--max-body-mb", "1.5", "--max-batch", "8",
                                      "--log-images", "--log-root", "none", "--port", "9000"])
    assert result.exit_code == 0, result.output
    settings = got["settings"]
    assert (settings.registry_root, settings.max_body_bytes, settings.max_batch, settings.log_images) == (
        "/r", int(1.5 * MIB), 8, True)
    assert settings.log_root is None and settings.grpc_max_message_bytes == 64 * MIB and got["port"] == 9000
