"""The package builds without a word from setuptools (#30: `make demo` from a fresh clone prints <= 60 lines), and the
wheel carries the lineage UI's templates and the licence."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_builds_quietly_with_templates_and_license(tmp_path: Path) -> None:
    # built with this environment's setuptools (no build isolation: no test talks to the internet)
    if int(version("setuptools").split(".")[0]) < 77:
        pytest.skip(f"setuptools {version('setuptools')} here; pyproject.toml needs >= 77 (`make install` upgrades it)")
    source = tmp_path / "source"  # a copy: an in-place build would leave build/ and dermpipe.egg-info in the checkout
    for name in ("dermpipe", "components", "pipelines"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--wheel-dir",
         str(tmp_path), str(source)],
        capture_output=True, text=True, check=True, timeout=300,
    )
    # pip prints a backend's warnings (a license table, a data folder missing from `packages`) even with --quiet;
    # lines about this machine's package indexes are pip's own, not the build's.
    noise = [line for line in (result.stdout + result.stderr).splitlines()
             if line.strip() and "is ignored: it is neither a file nor a directory" not in line]
    assert noise == []
    (wheel,) = tmp_path.glob("dermpipe-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    templates = {Path(n).name for n in names if n.startswith("dermpipe/lineage/ui/templates/")}
    assert templates == {p.name for p in (ROOT / "dermpipe/lineage/ui/templates").glob("*.html")}
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    assert "License-Expression: Apache-2.0" in zipfile.ZipFile(wheel).read(metadata).decode()
