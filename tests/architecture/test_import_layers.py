"""The import contracts hold (the layers, and the serving protocols' independence), and the check really sees every
layer: a forbidden import planted in a copy of the tree, in dermpipe/ or in the mapped components/ and pipelines/, or
one serving protocol importing another, makes lint-imports fail and name it."""

import sys
import tomllib
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lint_layers import REPO, build_mirror, run_lint  # noqa: E402 (tests/lint_layers.py, also run by make lint)

CONTRACTS = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def test_the_layers_hold(tmp_path):
    result = run_lint(build_mirror(REPO, tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(CONTRACTS)} kept, 0 broken" in result.stdout


def test_every_serving_protocol_is_in_the_independence_contract():
    """A module (or folder) of dermpipe/serving/ that makes an APIRouter is a protocol, and so is the gRPC server:
    one left out of the contract could import another protocol unnoticed."""
    serving = REPO / "dermpipe" / "serving"
    protocols = {"dermpipe.serving.grpc_server"} | {
        "dermpipe.serving." + path.relative_to(serving).parts[0].removesuffix(".py")
        for path in serving.rglob("*.py") if "APIRouter()" in path.read_text()}
    contract = next(c for c in CONTRACTS if c["id"] == "serving-protocols")
    assert protocols == set(contract["modules"])


@pytest.mark.parametrize(("module", "planted", "importer"), [
    ("dermpipe/data/schema.py", "import dermpipe.components.train", "dermpipe.data.schema"),
    ("dermpipe/model/zoo.py", "from dermpipe.serving import app", "dermpipe.model.zoo"),
    ("dermpipe/deploy/registry.py", "import dermpipe.pipelines.local", "dermpipe.deploy.registry"),
    # serving and deploy sit below monitoring: the model's clinical files are dermpipe.model.profile's
    ("dermpipe/serving/models.py", "from dermpipe.monitoring import drift", "dermpipe.serving.models"),
    ("dermpipe/deploy/predict.py", "import dermpipe.monitoring.log_reader", "dermpipe.deploy.predict"),
    # the mapped packages: a component importing the DAG factories above it
    ("components/split.py", "from dermpipe.pipelines import training", "dermpipe.components.split"),
    # serving protocols: gRPC taking TF REST's answers, v2 reaching into gRPC, a protocol reaching into v2's package
    ("dermpipe/serving/grpc_server.py", "from dermpipe.serving.tf_rest import metadata",
     "dermpipe.serving.grpc_server"),
    ("dermpipe/serving/open_inference/routes.py", "import dermpipe.serving.grpc_server",
     "dermpipe.serving.open_inference.routes"),
    ("dermpipe/serving/explain.py", "from dermpipe.serving.open_inference.tensors import parse_infer",
     "dermpipe.serving.explain"),
    # and through a neutral module: dependencies.py importing a protocol ties every protocol that uses it to it
    ("dermpipe/serving/dependencies.py", "from dermpipe.serving import feedback", "dermpipe.serving.dependencies"),
])
def test_a_planted_forbidden_import_breaks_the_contract(tmp_path, module, planted, importer):
    mirror = build_mirror(REPO, tmp_path)
    target = mirror / "dermpipe" / module.removeprefix("dermpipe/")
    target.write_text(target.read_text() + f"\n{planted}  # planted by the test\n")
    result = run_lint(mirror)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout and importer in result.stdout
