"""Every stage follows one convention (docs/architecture.md, "A stage's anatomy"), checked on the source with `ast`:

- the stage's code is ONE module named after the stage in the layer that owns what it produces:
  `dermpipe/<layer>/[<sub>/]<stage>.py`, or `dermpipe/<layer>/[<sub>/]<stage>/stage.py` when it needs a folder;
- that module defines `run(...)` and at most one parameter dataclass (`...Params`) beside it; a stage that reuses
  another stage's parameters (train-fold takes TrainParams) imports them from that stage's module;
- the component's body imports from dermpipe only its stage module (config and componentkit at the top);
- no `params.py`, `*_params.py` or `*_stage.py` module is left anywhere in dermpipe/.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
COMPONENTS = sorted(p.stem for p in (REPO / "components").glob("*.py") if p.stem != "__init__")
TOP_LEVEL_ALLOWED = {"dermpipe": {"config"}, "dermpipe.componentkit": None}  # None: any name

ModuleReader = Callable[[str], "str | None"]


def read_module(module: str, root: Path = REPO) -> str | None:
    """The source of dermpipe module `module` (a file or a package's __init__), None when it does not exist."""
    path = root.joinpath(*module.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate.read_text()
    return None


def _dermpipe_imports(nodes: list[ast.stmt]) -> list[tuple[str, list[str]]]:
    """(module, imported names) of every `from dermpipe... import` / `import dermpipe...` among `nodes`' walk."""
    found = []
    for node in (n for stmt in nodes for n in ast.walk(stmt)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "dermpipe":
            found.append((node.module, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names if alias.name.split(".")[0] == "dermpipe"]
    return found


def _component_function(tree: ast.Module, stage: str) -> ast.FunctionDef | None:
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == stage:
            return node
    return None


def stage_module_name_ok(stage: str, module: str) -> bool:
    """dermpipe.<layer>[.<sub>...].<stage>, or dermpipe.<layer>[.<sub>...].<stage>.stage (a folder; the layer
    itself may be the folder, as dermpipe.deploy is the deploy stage's)."""
    parts = module.split(".")
    if parts[0] != "dermpipe" or len(parts) < 3:
        return False
    return parts[-1] == stage or (parts[-1] == "stage" and parts[-2] == stage)


def _params_classes(tree: ast.Module) -> list[str]:
    return [n.name for n in tree.body if isinstance(n, ast.ClassDef) and n.name.endswith("Params")
            and any("dataclass" in ast.unparse(d) for d in n.decorator_list)]


def stage_module_problems(stage: str, module: str, imported: list[str], read: ModuleReader) -> list[str]:
    """What is wrong with the stage module `module`, from which the component imports `imported`."""
    source = read(module)
    if source is None:
        return [f"{stage}: its stage module {module} does not exist"]
    tree = ast.parse(source)
    problems = []
    if not any(isinstance(n, ast.FunctionDef) and n.name == "run" for n in tree.body):
        problems.append(f"{stage}: {module} defines no run(...) at its top level")
    if "run" not in imported:
        problems.append(f"{stage}: the component does not import run from {module}")
    defined = _params_classes(tree)
    if len(defined) > 1:
        problems.append(f"{stage}: {module} defines {len(defined)} parameter dataclasses {defined}; expected one")
    reused = {name: mod for mod, names in _dermpipe_imports(tree.body) for name in names if name.endswith("Params")}
    for name in (n for n in imported if n.endswith("Params") and n not in defined):
        source_module = reused.get(name)
        if source_module is None:
            problems.append(f"{stage}: {module} neither defines nor imports {name}")
        elif not any(stage_module_name_ok(other, source_module) for other in COMPONENTS if other != stage):
            problems.append(f"{stage}: {module} takes {name} from {source_module}, which is no other stage's module")
    return problems


def component_problems(stage: str, source: str, read: ModuleReader = read_module) -> tuple[str | None, list[str]]:
    """(the stage module the component `stage` calls, every way the component and that module break the
    convention)."""
    tree = ast.parse(source)
    function = _component_function(tree, stage)
    if function is None:
        return None, [f"{stage}: components/{stage}.py defines no component function {stage}()"]
    problems = []
    top = [node for node in tree.body if node is not function]
    for module, names in _dermpipe_imports(top):
        allowed = TOP_LEVEL_ALLOWED.get(module, set())
        if allowed is not None and not set(names) <= allowed:
            problems.append(f"{stage}: the component imports {module} at its top; only dermpipe.config and "
                            "dermpipe.componentkit belong there (the body imports its stage module)")
    body = _dermpipe_imports(function.body)
    modules = sorted({module for module, _ in body})
    if len(modules) != 1:
        return None, [*problems, f"{stage}: the component's body imports {modules or 'nothing'} from dermpipe; "
                                 "expected exactly its stage module"]
    module = modules[0]
    if not stage_module_name_ok(stage, module):
        problems.append(f"{stage}: its stage module {module} is not named after the stage; expected "
                        f"dermpipe.<layer>[.<sub>].{stage} or dermpipe.<layer>[.<sub>].{stage}.stage")
    imported = [name for _, names in body for name in names]
    return module, problems + stage_module_problems(stage, module, imported, read)


def leftover_modules(root: Path = REPO) -> list[str]:
    """Every params.py, *_params.py and *_stage.py under dermpipe/: parameter and stage code outside the stages."""
    return sorted(str(p.relative_to(root)) for p in (root / "dermpipe").rglob("*.py")
                  if p.name == "params.py" or p.stem.endswith(("_params", "_stage")))


@pytest.mark.parametrize("stage", COMPONENTS)
def test_each_stage_has_one_module_with_its_run_and_parameters(stage):
    _, problems = component_problems(stage, (REPO / "components" / f"{stage}.py").read_text())
    assert problems == []


def test_no_two_stages_share_a_module():
    modules = {stage: component_problems(stage, (REPO / "components" / f"{stage}.py").read_text())[0]
               for stage in COMPONENTS}
    shared = {m for m in modules.values() if list(modules.values()).count(m) > 1}
    assert shared == set()


def test_no_parameter_or_stage_module_is_left_outside_the_stages():
    assert leftover_modules() == []


# ---------------------------------------------------------------- the checks find what they are for

GOOD_COMPONENT = '''
from dermpipe.componentkit import stage_component

@stage_component()
def widen(raw, out, width: int = 3):
    from dermpipe.data.widen import WidenParams, run

    run(raw, out, WidenParams(width=width))
'''
GOOD_MODULE = '''
from dataclasses import dataclass

@dataclass(frozen=True)
class WidenParams:
    width: int = 3

def run(raw, out, params): ...
'''


def _reader(modules: dict[str, str]) -> ModuleReader:
    return modules.get


def test_a_conforming_synthetic_stage_passes():
    assert component_problems("widen", GOOD_COMPONENT, _reader({"dermpipe.data.widen": GOOD_MODULE})) == (
        "dermpipe.data.widen", [])
    folder = GOOD_COMPONENT.replace("dermpipe.data.widen", "dermpipe.model.widen.stage")
    assert component_problems("widen", folder, _reader({"dermpipe.model.widen.stage": GOOD_MODULE}))[1] == []


@pytest.mark.parametrize(("component", "modules", "expected"), [
    # parameters in a separate params module: two modules in the body
    (GOOD_COMPONENT.replace("    from dermpipe.data.widen import WidenParams, run",
                            "    from dermpipe.data.params import WidenParams\n"
                            "    from dermpipe.data.widen import run"),
     {"dermpipe.data.widen": GOOD_MODULE}, "expected exactly its stage module"),
    # the stage's code in a module not named after it
    (GOOD_COMPONENT.replace("dermpipe.data.widen", "dermpipe.data.widen_stage"),
     {"dermpipe.data.widen_stage": GOOD_MODULE}, "is not named after the stage"),
    # a stage module without run
    (GOOD_COMPONENT, {"dermpipe.data.widen": GOOD_MODULE.replace("def run(", "def execute(")}, "defines no run"),
    # two parameter dataclasses in one stage module
    (GOOD_COMPONENT, {"dermpipe.data.widen": GOOD_MODULE + "\n@dataclass\nclass ExtraParams:\n    x: int = 1\n"},
     "defines 2 parameter dataclasses"),
    # parameters that the stage module takes from a module that is no stage's
    (GOOD_COMPONENT, {"dermpipe.data.widen": GOOD_MODULE.replace("@dataclass(frozen=True)\nclass WidenParams:\n"
                                                                 "    width: int = 3\n",
                                                                 "from dermpipe.data.knobs import WidenParams\n")},
     "which is no other stage's module"),
    # a library import at the component's top
    (GOOD_COMPONENT.replace("from dermpipe.componentkit import stage_component",
                            "from dermpipe.componentkit import stage_component\nfrom dermpipe.data import widen"),
     {"dermpipe.data.widen": GOOD_MODULE}, "only dermpipe.config and dermpipe.componentkit belong there"),
    # a stage module that does not exist
    (GOOD_COMPONENT, {}, "does not exist"),
])
def test_a_violating_synthetic_stage_is_reported(component, modules, expected):
    _, problems = component_problems("widen", component, _reader(modules))
    assert any(expected in problem for problem in problems), problems


def test_reusing_another_stages_parameters_is_allowed():
    """train-fold's module imports TrainParams from train's: allowed, since train is a stage of its own."""
    module = GOOD_MODULE.replace("@dataclass(frozen=True)\nclass WidenParams:\n    width: int = 3\n",
                                 "from dermpipe.model.training.train import WidenParams\n")
    assert component_problems("widen", GOOD_COMPONENT, _reader({"dermpipe.data.widen": module}))[1] == []


def test_leftover_parameter_and_stage_modules_are_found(tmp_path):
    for name in ("data/params.py", "monitoring/drift_stage.py", "model/cv_params.py", "model/stage.py",
                 "serving/settings.py"):
        (tmp_path / "dermpipe" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "dermpipe" / name).write_text("")
    assert leftover_modules(tmp_path) == ["dermpipe/data/params.py", "dermpipe/model/cv_params.py",
                                          "dermpipe/monitoring/drift_stage.py"]
