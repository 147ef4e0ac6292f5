"""One source per parameter set: name, type and default agree on the four surfaces of every pipeline parameter.

The surfaces: the stage dataclass field (the source), the component's literal signature, the training pipeline's
literal signature, and `dermpipe run`'s option (derived; its effective default is the `cluster` profile's value).
KFP ships a component's source, so its signature cannot be generated: this test is what keeps it honest.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import pytest
import typer

from dermpipe.cli import run_options
from dermpipe.cli.main import app
from dermpipe.components.cross_validate import cross_validate
from dermpipe.components.deploy import deploy
from dermpipe.components.evaluate import evaluate
from dermpipe.components.explain import explain
from dermpipe.components.gate import gate
from dermpipe.components.ingest import ingest
from dermpipe.components.merge import merge
from dermpipe.components.prepare import prepare
from dermpipe.components.profile import profile
from dermpipe.components.resolve_champion import resolve_champion
from dermpipe.components.split import split
from dermpipe.components.train import train
from dermpipe.model.training.train import TrainParams
from dermpipe.pipelines.parameters import PIPELINE_PARAMETERS, Target, field_spec, specs
from dermpipe.pipelines.profiles import resolve_params
from dermpipe.pipelines.training import build_training_pipeline

COMPONENTS = {c.name.replace("-", "_"): c.python_func for c in
              (ingest, merge, split, prepare, train, profile, cross_validate, evaluate, explain, gate,
               resolve_champion, deploy)}
# Component parameters that are no pipeline parameter, and why; their dataclass defaults are checked all the same.
COMPONENT_ONLY = {
    ("gate", "champion_version"), ("gate", "champion_digest"),  # resolve-champion's outputs, not user input
    ("deploy", "champion_version"), ("split", "benchmark_uri"), ("gate", "benchmark"), ("deploy", "benchmark"),
    ("profile", "n_components"),  # the drift profile's PCA size, left at its default by the pipeline
    # deploy settings the pipeline leaves at their defaults (a cloud deployment sets them in the component's spec)
    ("deploy", "vertex_endpoint"), ("deploy", "vertex_machine_type"), ("deploy", "vertex_serving_image"),
    ("deploy", "kserve_service_account"), ("deploy", "canary_traffic_percent"),
}
VALUE_TYPES = (int, float, str, bool)


def _plain_parameters(func: Callable) -> dict[str, inspect.Parameter]:
    """A component's parameters that are values (not Input/Output artifacts)."""
    return {name: p for name, p in inspect.signature(func).parameters.items() if p.annotation in VALUE_TYPES}


def _compare(where: str, want: tuple[type, Any], got: inspect.Parameter | None) -> list[str]:
    if got is None:
        return [f"{where}: missing (expected {want[0].__name__} = {want[1]!r})"]
    found = (got.annotation, None if got.default is inspect.Parameter.empty else got.default)
    if found != want:
        return [f"{where}: {found[0].__name__} = {found[1]!r}, the dataclass says {want[0].__name__} = {want[1]!r}"]
    return []


def _cli_disagreements(name: str, want: tuple[type, Any], options: Mapping[str, Any]) -> list[str]:
    if name in run_options.NOT_DERIVED:
        return []
    option = options.get(name)
    if option is None:
        return [f"{name}: `dermpipe run` has no option {run_options.option_flag(name)}"]
    problems = []
    kind = option.type_descriptor.annotation  # Typer's own Click: the type the option converts to
    if kind is not want[0]:
        problems.append(f"{name}: `dermpipe run` option is {kind}, the dataclass says {want[0].__name__}")
    if option.default is not None:
        problems.append(f"{name}: `dermpipe run` option defaults to {option.default!r}, not None (not given)")
    effective = resolve_params("cluster")[name]
    if effective != want[1] or type(effective) is not want[0]:
        problems.append(f"{name}: `dermpipe run --profile cluster` gives {effective!r}, the dataclass {want[1]!r}")
    return problems


def disagreements(table: Mapping[str, tuple[Target, ...]], components: Mapping[str, Callable],
                  pipeline_func: Callable, cli_command: Any) -> list[str]:
    """Every place where the name, type or default of a pipeline parameter differs between its stage dataclass, the
    component, the pipeline function and the `dermpipe run` option (empty: they agree)."""
    problems: list[str] = []
    pipeline = inspect.signature(pipeline_func).parameters
    options = {p.name: p for p in cli_command.params}
    for name, targets in table.items():
        first = field_spec(targets[0])
        want = (first.type, first.default)
        for target in targets:
            spec = field_spec(target)
            if (spec.type, spec.default) != want:
                problems.append(f"{name}: {target.params.__name__}.{target.field} is {spec.type.__name__} = "
                                f"{spec.default!r}, {targets[0].params.__name__}.{targets[0].field} says {want}")
            got = _plain_parameters(components[target.stage]).get(target.field)
            problems += _compare(f"{name}: component {target.stage}({target.field})", (spec.type, spec.default), got)
        problems += _compare(f"{name}: pipeline signature", want, pipeline.get(name))
        problems += _cli_disagreements(name, want, options)
    problems += [f"{name}: pipeline parameter missing from the table" for name in set(pipeline) - set(table)]
    return problems


def _uncovered(table: Mapping[str, tuple[Target, ...]], components: Mapping[str, Callable]) -> list[str]:
    """Component value parameters neither fed by a pipeline parameter nor listed in COMPONENT_ONLY."""
    fed = {(t.stage, t.field) for targets in table.values() for t in targets}
    return [f"{stage}({name})" for stage, func in components.items() for name in _plain_parameters(func)
            if (stage, name) not in fed | COMPONENT_ONLY]


def _run_command() -> Any:
    return typer.main.get_command(app).commands["run"]


def _pipeline_func() -> Callable:
    return build_training_pipeline(None).pipeline_func


def test_the_four_surfaces_agree():
    assert disagreements(PIPELINE_PARAMETERS, COMPONENTS, _pipeline_func(), _run_command()) == []


def test_every_component_parameter_is_a_pipeline_parameter_or_listed():
    assert _uncovered(PIPELINE_PARAMETERS, COMPONENTS) == []


def test_component_only_parameters_match_their_dataclass():
    from dermpipe.data.split import SplitParams
    from dermpipe.deploy.deploy import DeployParams
    from dermpipe.deploy.gate.stage import GateParams
    from dermpipe.model.profile.stage import ProfileParams

    classes = {"gate": GateParams, "deploy": DeployParams, "profile": ProfileParams, "split": SplitParams}
    for stage, name in sorted(COMPONENT_ONLY):
        spec = field_spec(Target(stage, classes[stage], name))
        assert _compare(f"{stage}({name})", (spec.type, spec.default),
                        _plain_parameters(COMPONENTS[stage]).get(name)) == []


def _drifted(func: Callable, name: str, default: Any) -> Callable:
    """A stand-in for `func` whose signature gives `name` another default (the drift a hand edit would cause)."""
    signature = inspect.signature(func)

    def stand_in(*args, **kwargs):
        return func(*args, **kwargs)

    stand_in.__signature__ = signature.replace(parameters=[
        p.replace(default=default) if p.name == name else p for p in signature.parameters.values()])
    return stand_in


def test_a_drifted_component_default_is_reported_by_name():
    components = {**COMPONENTS, "train": _drifted(COMPONENTS["train"], "epochs", 11)}
    found = disagreements(PIPELINE_PARAMETERS, components, _pipeline_func(), _run_command())
    assert found == ["epochs: component train(epochs): int = 11, the dataclass says int = 10"]


def test_a_drifted_pipeline_default_is_reported_by_name():
    found = disagreements(PIPELINE_PARAMETERS, COMPONENTS, _drifted(_pipeline_func(), "split_seed", 7),
                          _run_command())
    assert found == ["split_seed: pipeline signature: int = 7, the dataclass says int = 42"]


def test_a_drifted_dataclass_default_is_reported_by_name(monkeypatch):
    specs()  # cached with the true defaults first: the drift below must not leak into other tests
    fields = {f.name: f for f in dataclasses.fields(TrainParams)}
    monkeypatch.setattr(fields["patience"], "default", 5)
    found = disagreements(PIPELINE_PARAMETERS, COMPONENTS, _pipeline_func(), _run_command())
    assert found and all(line.startswith("patience: ") for line in found), found
    assert "patience: component train(patience): int = 3, the dataclass says int = 5" in found


def test_an_unlisted_pipeline_parameter_is_reported():
    table = {k: v for k, v in PIPELINE_PARAMETERS.items() if k != "focal_gamma"}
    assert "focal_gamma: pipeline parameter missing from the table" in disagreements(
        table, COMPONENTS, _pipeline_func(), _run_command())
    assert _uncovered(table, COMPONENTS) == ["train(focal_gamma)"]


@pytest.mark.parametrize("name", ["split_seed", "train_seed", "train_cache", "train_quiet", "explain_per_class"])
def test_prefixed_names_follow_the_naming_rule(name):
    stage, _, field = name.partition("_")
    assert [(t.stage, t.field) for t in PIPELINE_PARAMETERS[name]][0] == (stage, field)
