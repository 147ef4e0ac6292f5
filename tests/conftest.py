"""Shared fixtures: the real data kits in ../shared/data and small generated demo data sets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
ISIC_SAMPLE = SHARED_DATA / "isic2019-sample"
ISIC_CSV = SHARED_DATA / "isic2019-csv"


@pytest.fixture(scope="session")
def isic_sample() -> Path:
    if not ISIC_SAMPLE.exists():
        pytest.fail(f"real data kit missing: {ISIC_SAMPLE} (CI lays ../shared beside the repository)")
    return ISIC_SAMPLE


@pytest.fixture(scope="session")
def isic_csv() -> Path:
    if not ISIC_CSV.exists():
        pytest.fail(f"real data kit missing: {ISIC_CSV}")
    return ISIC_CSV


@pytest.fixture(scope="session")
def demo_dataset(tmp_path_factory) -> Path:
    """A small ingested demo data set (canonical layout + manifest), shared by the tests that only read it."""
    from dermpipe.data.ingest import ingest_source

    out = tmp_path_factory.mktemp("demo") / "raw"
    ingest_source("demo", out, demo_images=160)
    return out


@pytest.fixture(scope="session", autouse=True)
def session_home(tmp_path_factory):
    """$DERMPIPE_HOME for tests that set none: a fresh folder per session (per pytest-xdist worker), never the
    checkout's ./.dermpipe, so that parallel workers never share content-keyed training checkpoints or registries."""
    if os.environ.get("DERMPIPE_HOME"):
        yield Path(os.environ["DERMPIPE_HOME"])
        return
    with pytest.MonkeyPatch.context() as mp:
        home = tmp_path_factory.mktemp("session-home")
        mp.setenv("DERMPIPE_HOME", str(home))
        yield home


@pytest.fixture()
def dermpipe_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("DERMPIPE_HOME", str(home))
    return home


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def emulator():
    """gcp-storage-emulator (in memory, with generation preconditions) on a free loopback port; STORAGE_EMULATOR_HOST
    points the real google-cloud-storage client at it. Yields the emulator's URL."""
    import socket
    import subprocess
    import sys
    import time

    port = _free_port()
    # tests/gcs_emulator.py: the emulator plus Cloud Storage's generation preconditions (it ignores them alone)
    launcher = Path(__file__).with_name("gcs_emulator.py")
    proc = subprocess.Popen([sys.executable, str(launcher), "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("gcp-storage-emulator did not start on loopback within 30 s")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
        yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def run_local_calls(monkeypatch) -> list[dict]:
    """The params each `dermpipe run` hands to the local runner, which is replaced (nothing runs)."""
    import dermpipe.pipelines.local as local

    calls: list[dict] = []

    class Record:
        status = "succeeded"

    def fake_run_local(params, **_):
        calls.append(params)
        return Record()

    monkeypatch.setattr(local, "run_local", fake_run_local)
    monkeypatch.setattr("dermpipe.cli.main._summary", lambda record: "summary")
    return calls
