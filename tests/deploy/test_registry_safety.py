"""The registry cannot lose a model: concurrent pushes (local and gs://), a deploy killed between files, promotion
by compare-and-swap, and KServe following promote and rollback.

Writers run as separate processes, as two pipeline runs would. On gs:// they use the real google-cloud-storage client
against gcp-storage-emulator with the generation preconditions the emulator itself ignores (tests/gcs_emulator.py).
"""

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from dermpipe.cli.main import app
from dermpipe.deploy import cloud_targets, registry

WORKER = textwrap.dedent("""
    import json, sys, tempfile, time
    from pathlib import Path
    from dermpipe.deploy import registry
    root, worker, pushes, start = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    while time.time() < start:  # all workers start together
        time.sleep(0.005)
    for i in range(pushes):
        tag = f"{worker}-{i}"
        with tempfile.TemporaryDirectory() as tmp:
            stage = Path(tmp)
            (stage / "variables").mkdir()
            (stage / "saved_model.pb").write_text(f"graph {tag}")
            (stage / "variables" / "variables.data-00000-of-00001").write_text(f"weights {tag}")
            (stage / "model.keras").write_text(f"keras {tag}")
            seen = registry.champion(root, "m")
            version = registry.allocate(root, "m", owner={"worker": tag})
            registry.commit(root, "m", version, stage, digest=f"digest-{tag}")
        result = registry.promote(root, "m", version, expected=seen.version or None, reason=tag)
        print(json.dumps({"tag": tag, "version": version, "expected": seen.version or None,
                          "promoted": result.promoted, "current": result.current, "previous": result.previous}),
              flush=True)
""")


def _run_workers(root: str, workers: int, pushes: int) -> list[dict]:
    start = time.time() + 3.0
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, root, f"w{w}", str(pushes), str(start)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for w in range(workers)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
        results += [json.loads(line) for line in out.splitlines()]
    return results


def _read(root: str, path: str) -> str:
    from dermpipe import storage
    return storage.read_text(storage.join(root, path))


def _assert_nothing_lost(root: str, results: list[dict], expected_pushes: int) -> None:
    versions = sorted(r["version"] for r in results)
    assert len(results) == expected_pushes
    assert versions == list(range(1, expected_pushes + 1))  # every push its own number, none shared or skipped
    assert registry.versions(root, "m") == versions and registry.allocated_versions(root, "m") == versions
    for r in results:  # each version holds exactly the files its writer staged
        v, tag = r["version"], r["tag"]
        assert _read(root, f"m/{v}/saved_model.pb") == f"graph {tag}"
        assert _read(root, f"m/{v}/variables/variables.data-00000-of-00001") == f"weights {tag}"
        assert registry.version_digest(root, "m", v) == f"digest-{tag}"
    promoted = [r for r in results if r["promoted"]]
    assert promoted, "at least the first promotion must win"
    for r in promoted:  # a promotion only ever replaced the champion its writer had compared with
        assert r["previous"] == r["expected"] and r["current"] == r["version"]
    for r in results:
        if not r["promoted"]:  # a lost swap: someone else's promotion is current, and it is reported
            assert r["current"] != r["expected"]
    pointer = registry.read_current(root, "m")
    assert pointer["version"] != pointer["previous"]
    assert pointer["version"] in {r["version"] for r in promoted}


@pytest.mark.slow
def test_concurrent_pushes_into_a_local_registry_lose_nothing(tmp_path):
    root = str(tmp_path / "registry")
    _assert_nothing_lost(root, _run_workers(root, workers=4, pushes=3), 12)


@pytest.mark.slow
def test_concurrent_pushes_into_a_gcs_registry_lose_nothing(emulator):
    from dermpipe.data.sources.gcs import make_client

    bucket = make_client().create_bucket(f"reg{time.time_ns()}")
    root = f"gs://{bucket.name}/registry"
    _assert_nothing_lost(root, _run_workers(root, workers=3, pushes=2), 6)


KILLED = textwrap.dedent("""
    import os, signal, sys, tempfile
    from pathlib import Path
    from dermpipe.deploy import registry
    root = sys.argv[1]
    written = []

    def die_after(n):
        def hook(*args, **kwargs):
            written.append(args)
            if len(written) > n:
                os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no exception handler: a killed pod
            return original(*args, **kwargs)
        return hook

    if root.startswith("gs://"):
        from google.cloud.storage import Blob
        original = Blob.upload_from_filename
        Blob.upload_from_filename = lambda self, *a, **k: die_after(2)(self, *a, **k)
    else:
        import shutil
        original = shutil.copyfile
        shutil.copyfile = die_after(2)
    with tempfile.TemporaryDirectory() as tmp:
        stage = Path(tmp)
        (stage / "variables").mkdir()
        for name in ("model.keras", "saved_model.pb", "variables/variables.index", "variables/data"):
            (stage / name).write_text(name)
        version = registry.allocate(root, "m")
        print(version, flush=True)
        registry.commit(root, "m", version, stage, digest="half")
""")


def _gcs_root(emulator_url: str | None) -> str:
    from dermpipe.data.sources.gcs import make_client

    return f"gs://{make_client().create_bucket(f'kill{time.time_ns()}').name}/registry"


@pytest.mark.parametrize("where", ["local", "gcs"])
def test_a_deploy_killed_between_files_is_never_seen(where, tmp_path, request):
    from dermpipe.serving.models import ModelManager
    from dermpipe.serving.settings import ServingError

    root = str(tmp_path / "registry") if where == "local" else _gcs_root(request.getfixturevalue("emulator"))
    proc = subprocess.run([sys.executable, "-c", KILLED, root], capture_output=True, text=True, timeout=120,
                          env=os.environ.copy())
    assert proc.returncode == -9, proc.stderr  # SIGKILL, halfway
    version = int(proc.stdout.split()[0])
    assert version == 1 and _read(root, "m/1/model.keras") == "model.keras"  # some files did land
    assert registry.allocated_versions(root, "m") == [1]
    assert registry.versions(root, "m") == [] and not registry.is_servable(root, "m", 1)
    assert registry.list_versions(root, "m") == [] and registry.model_names(root) == []
    with pytest.raises(registry.RegistryError, match="no version 1 ready to serve"):
        registry.promote(root, "m", 1, expected=None, reason="test")
    manager = ModelManager(root, "m", poll_seconds=60)
    assert manager.refresh() is False  # no current.json names it
    assert manager.loaded() is None and manager.loaded(1) is None  # nothing in memory either
    with pytest.raises(ServingError) as err:
        manager.get(1)
    assert err.value.status == 404
    assert manager.loaded(1) is None
    assert registry.allocate(root, "m") == 2  # the gap stays: a number is never reused


def test_promotion_is_a_compare_and_swap_against_the_champion_seen(tmp_path):
    root = str(tmp_path)
    for v in (1, 2, 3):
        stage = tmp_path / f"stage{v}"
        stage.mkdir()
        (stage / "saved_model.pb").write_text(str(v))
        registry.commit(root, "m", registry.allocate(root, "m"), stage, digest=f"d{v}")
    assert registry.promote(root, "m", 1, expected=None, reason="first").promoted
    won = registry.promote(root, "m", 2, expected=1, reason="run a")
    lost = registry.promote(root, "m", 3, expected=1, reason="run b")  # compared with 1, but 2 is current now
    assert won.promoted and won.previous == 1
    assert not lost.promoted and lost.current == 2
    assert registry.champion(root, "m") == registry.Champion(2, "d2")
    assert registry.find_by_digest(root, "m", "d3") == 3 and registry.find_by_digest(root, "m", "nope") is None
    pointer = registry.read_current(root, "m")
    assert (pointer["version"], pointer["previous"], pointer["digest"]) == (2, 1, "d2")


class FakeKube:
    """get/create/patch of namespaced custom objects, recording the manifests applied."""

    def __init__(self):
        self.applied = []

    def get_namespaced_custom_object(self, *args):
        return {}

    def patch_namespaced_custom_object(self, group, version, namespace, plural, name, body):
        self.applied.append(body)


def test_rollback_and_promote_move_what_kserve_serves(tmp_path):
    from dermpipe.cli.serve import _follow_on_kserve

    root = str(tmp_path)
    for v in (1, 2):
        stage = tmp_path / f"stage{v}"
        (stage / "variables").mkdir(parents=True)
        (stage / "saved_model.pb").write_text(f"v{v}")
        (stage / "variables" / "variables.index").write_text(f"v{v}")
        registry.commit(root, "m", registry.allocate(root, "m"), stage, digest=f"d{v}")
    registry.set_current(root, "m", 2)
    cloud_targets.remember_kserve(root, "m", {"namespace": "models", "service_account": "sa"})
    manifest = tmp_path / "isvc.yaml"
    result = CliRunner().invoke(app, ["models", "rollback", "--model-name", "m", "--registry-root", root,
                                      "--no-apply-kserve", "--kserve-manifest", str(manifest)])
    assert result.exit_code == 0, result.output
    rendered = yaml.safe_load(manifest.read_text())
    assert rendered["spec"]["predictor"]["model"]["storageUri"] == f"{root}/m/serving/1"
    assert rendered["metadata"]["annotations"]["dermpipe/registry-version"] == "1"
    assert rendered["metadata"]["namespace"] == "models" and rendered["spec"]["predictor"]["serviceAccountName"] == "sa"
    alias = Path(root) / "m" / "serving" / "1"
    assert sorted(p.name for p in alias.iterdir()) == ["1"]  # TF Serving there can only serve version 1
    assert (alias / "1" / "saved_model.pb").read_text() == "v1"
    assert (alias / "1" / "variables" / "variables.index").read_text() == "v1"
    api = FakeKube()
    registry.set_current(root, "m", 2)
    _follow_on_kserve(root, "m", 2, apply=True, manifest_out=None, api=api)
    assert api.applied[-1]["spec"]["predictor"]["model"]["storageUri"] == f"{root}/m/serving/2"
    never = CliRunner().invoke(app, ["models", "promote", "1", "--model-name", "other", "--registry-root", root])
    assert never.exit_code == 2 and "kserve" not in never.output
