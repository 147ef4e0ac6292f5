"""Check dermpipe's import layers with import-linter, on a tree where the contracts can see every layer.

components/ and pipelines/ are mapped into the `dermpipe` namespace by setuptools' package-dir from outside
dermpipe/, so an import-linter run on the checkout would build its graph from dermpipe/ alone and never see them:
their contracts would pass vacuously. This builds a mirror in which they are real subpackages
(<out>/dermpipe/components, <out>/dermpipe/pipelines) and runs `lint-imports` there with pyproject.toml's contracts.

    python tests/lint_layers.py          # exit status of lint-imports; `make lint` and tests/architecture run it
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MAPPED = ("components", "pipelines")  # pyproject.toml [tool.setuptools] package-dir


def build_mirror(repo: Path, out: Path) -> Path:
    """<out>/dermpipe with components/ and pipelines/ inside it, as the installed namespace has them."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(repo / "dermpipe", out / "dermpipe", ignore=ignore)
    for name in MAPPED:
        shutil.copytree(repo / name, out / "dermpipe" / name, ignore=ignore)
    return out


def run_lint(mirror: Path, config: Path = REPO / "pyproject.toml") -> subprocess.CompletedProcess:
    """lint-imports on the mirror (found first on PYTHONPATH, ahead of the editable install)."""
    lint = Path(sys.executable).with_name("lint-imports")
    env = {**os.environ, "PYTHONPATH": str(mirror)}
    return subprocess.run([str(lint), str(config), "--no-cache", "--no-logo"], cwd=mirror, env=env,
                          capture_output=True, text=True, timeout=300)


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        result = run_lint(build_mirror(REPO, Path(tmp)))
    print(result.stdout + result.stderr)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
