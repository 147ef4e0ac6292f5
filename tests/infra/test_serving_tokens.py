"""The serving infra's feedback tokens: the KServe InferenceService binds 0.0.0.0, so it passes --auth-token-file from
a mounted Kubernetes Secret. The documented kubectl command must create the Secret the manifest mounts, and a Secret
volume's update (the kubelet's atomic swap of the `..data` link) must reach the server without a restart."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath

import pytest
import yaml

from dermpipe.serving.auth import Authenticator, load_tokens
from dermpipe.serving.settings import ServingError

REPO = Path(__file__).resolve().parents[2]
KSERVE = REPO / "infra" / "k8s" / "kserve"
TOKEN_A, TOKEN_B = "clinic-a:" + "a" * 43, "lab-b:" + "b" * 43


def _predictor() -> dict:
    return yaml.safe_load((KSERVE / "inferenceservice.yaml").read_text())["spec"]["predictor"]


def _token_volume(predictor: dict) -> tuple[PurePosixPath, dict, dict]:
    """(the --auth-token-file path, its volumeMount, its volume)."""
    (container,) = predictor["containers"]
    args = container["args"]
    assert "--auth-token-file" in args, "the server binds 0.0.0.0: without tokens it refuses every label"
    path = PurePosixPath(args[args.index("--auth-token-file") + 1])
    (mount,) = [m for m in container["volumeMounts"] if PurePosixPath(m["mountPath"]) == path.parent]
    (volume,) = [v for v in predictor["volumes"] if v["name"] == mount["name"]]
    return path, mount, volume


def test_the_inference_service_reads_its_tokens_from_a_mounted_secret():
    predictor = _predictor()
    path, mount, volume = _token_volume(predictor)
    assert mount["readOnly"] is True and "subPath" not in mount  # a subPath mount never sees the Secret's updates
    secret = volume["secret"]
    assert secret["secretName"] == "dermpipe-serving-tokens" and secret["optional"] is False
    assert secret["items"] == [{"key": "tokens", "path": path.name}]
    # root:fsGroup, group-readable only: the server's user reads it through its group, nobody else can
    assert secret["defaultMode"] == 0o440
    pod = predictor["securityContext"]
    assert pod["fsGroup"] == pod["runAsGroup"] == pod["runAsUser"] == 1000


def _documented_command() -> list[str]:
    text = (REPO / "docs" / "security.md").read_text()
    (line,) = {m.group(0) for m in re.finditer(r"kubectl create secret generic \S+ -n \S+ --from-file=\S+", text)}
    return line.split()


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_the_documented_kubectl_command_creates_the_secret_the_manifest_mounts(tmp_path):
    tokens = tmp_path / "tokens.txt"
    tokens.write_text(f"# issued today\n{TOKEN_A}\n{TOKEN_B}\n")
    command = [part.replace("tokens.txt", str(tokens)) for part in _documented_command()]
    done = subprocess.run([*command, "--dry-run=client", "-o", "yaml"], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rendered = yaml.safe_load(done.stdout)
    path, _, volume = _token_volume(_predictor())
    (item,) = volume["secret"]["items"]
    assert rendered["kind"] == "Secret" and rendered["metadata"]["name"] == volume["secret"]["secretName"]
    kustomization = yaml.safe_load((KSERVE / "kustomization.yaml").read_text())
    assert rendered["metadata"]["namespace"] == kustomization["namespace"]
    mounted = tmp_path / "mounted"
    mounted.write_bytes(base64.b64decode(rendered["data"][item["key"]]))
    assert load_tokens(str(mounted), environ={}) == {"clinic-a": "a" * 43, "lab-b": "b" * 43}


def _secret_volume_swap(folder: Path, stamp: str, text: str) -> None:
    """What the kubelet's AtomicWriter does: a new timestamped folder, `..data` re-pointed at it by a rename."""
    (folder / stamp).mkdir()
    (folder / stamp / "tokens").write_text(text)
    (folder / "..data_tmp").symlink_to(stamp)
    os.replace(folder / "..data_tmp", folder / "..data")
    if not (folder / "tokens").is_symlink():
        (folder / "tokens").symlink_to("..data/tokens")


def test_a_secret_update_revokes_a_token_without_a_restart(tmp_path):
    folder = tmp_path / "etc-dermpipe-tokens"
    folder.mkdir()
    _secret_volume_swap(folder, "..2026_12_07_09_00_00.1", f"{TOKEN_A}\n{TOKEN_B}\n")
    path = str(folder / "tokens")
    gate = Authenticator(load_tokens(path, environ={}), 0, token_file=path)
    assert gate.check("Bearer " + "a" * 43, "10.0.0.7", "feedback").name == "clinic-a"
    _secret_volume_swap(folder, "..2026_12_07_09_01_00.2", f"{TOKEN_B}\n")  # clinic-a revoked
    with pytest.raises(ServingError) as refused:
        gate.check("Bearer " + "a" * 43, "10.0.0.7", "feedback")
    assert refused.value.status == 403
    assert gate.check("Bearer " + "b" * 43, "10.0.0.8", "feedback").name == "lab-b"
