"""The import layers hold, and the check really sees every layer: a forbidden import planted in a copy of the tree,
in dermpipe/ or in the mapped components/ and pipelines/, makes lint-imports fail and name it."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lint_layers import REPO, build_mirror, run_lint  # noqa: E402 (tests/lint_layers.py, also run by make lint)


def test_the_layers_hold(tmp_path):
    result = run_lint(build_mirror(REPO, tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(("module", "planted", "importer"), [
    ("dermpipe/data/schema.py", "import dermpipe.components.train", "dermpipe.data.schema"),
    ("dermpipe/model/zoo.py", "from dermpipe.serving import app", "dermpipe.model.zoo"),
    ("dermpipe/deploy/registry.py", "import dermpipe.pipelines.local", "dermpipe.deploy.registry"),
    # serving and deploy sit below monitoring: the model's clinical files are dermpipe.model.profile's
    ("dermpipe/serving/models.py", "from dermpipe.monitoring import drift", "dermpipe.serving.models"),
    ("dermpipe/deploy/predict.py", "import dermpipe.monitoring.log_reader", "dermpipe.deploy.predict"),
    # the mapped packages: a component importing the DAG factories above it
    ("components/split.py", "from dermpipe.pipelines import training", "dermpipe.components.split"),
])
def test_a_planted_forbidden_import_breaks_the_contract(tmp_path, module, planted, importer):
    mirror = build_mirror(REPO, tmp_path)
    target = mirror / "dermpipe" / module.removeprefix("dermpipe/")
    target.write_text(target.read_text() + f"\n{planted}  # planted by the test\n")
    result = run_lint(mirror)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout and importer in result.stdout
