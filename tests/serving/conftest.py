"""Fixtures for the serving tests: a registry with two tiny exported models and `dermpipe serve` on loopback."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import requests

MODEL = "tiny"
IMAGE_SIZE = 32
PCA_K = 4
ISIC2020_IMAGES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "isic2020-sample" / "images"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_clinical(folder: Path, model, image_size: int) -> None:
    """A clinical.json for a served test version: melanoma_sens95 refers everything (threshold 0), melanoma_sens90
    nothing (threshold 1), and an OOD detector fitted and calibrated (99 %) on 40 ISIC 2020 images' embeddings, on
    a PCA fitted to them (it replaces the version's random embedding_pca.npz, as the profile stage's would)."""
    import json

    from dermpipe.model.evaluation.operating_points import OperatingPoint
    from dermpipe.model.profile.clinical import Clinical
    from dermpipe.model.profile.features import decode_images
    from dermpipe.model.profile.ood import calibrate, fit_detector
    from dermpipe.model.profile.reference import fit_embedding_pca

    embeddings = decode_images(sorted(ISIC2020_IMAGES.glob("*.jpg"))[:40], image_size, model).embeddings
    pca = fit_embedding_pca(embeddings, PCA_K)
    pca.save(folder / "embedding_pca.npz")
    detector = fit_detector(pca, embeddings)
    detector = calibrate(detector, detector.score(pca, embeddings), 0.99)
    points = (OperatingPoint("melanoma_sens95", 0.0, 0.95), OperatingPoint("melanoma_sens90", 1.0, 0.90),
              OperatingPoint("melanoma_sens99", 0.0, 0.99, min_specificity=0.2,
                             invalid="specificity 0.000 is under the floor 0.20: it refers nearly every patient"))
    (folder / "clinical.json").write_text(json.dumps(Clinical(points, detector, {}).as_dict()))


def make_registry(root: Path, seeds: dict[int, int], current: int, image_size: int = IMAGE_SIZE,
                  clinical: tuple[int, ...] = ()) -> Path:
    """Export a tiny simple_cnn per version (with an embedding_pca.npz, and a clinical.json for the versions in
    `clinical`) and make `current` current."""
    from dermpipe.deploy import registry
    from dermpipe.model.export import export_serving_model
    from dermpipe.model.zoo import build_classifier

    for version, seed in seeds.items():
        model, _ = build_classifier("simple_cnn", image_size, 8, seed=seed)
        folder = root / MODEL / str(version)
        export_serving_model(model, folder)
        model.save(folder / "model.keras")  # the registry keeps it beside the SavedModel; :explain reads it
        rng = np.random.default_rng(seed)
        dim = int(model.get_layer("pool").output.shape[-1])
        np.savez(folder / "embedding_pca.npz", mean=rng.normal(size=dim).astype(np.float32),
                 components=rng.normal(size=(PCA_K, dim)).astype(np.float32))
        if version in clinical:
            write_clinical(folder, model, image_size)
    registry.set_current(str(root), MODEL, current)
    return root


def reference(registry_root, version: int, images: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """What the exported SavedModel itself answers for these bytes, in this process."""
    import tensorflow as tf

    served = tf.saved_model.load(str(registry_root / MODEL / str(version))).signatures["serving_default"]
    out = served(image_bytes=tf.constant(images))
    return out["probabilities"].numpy(), out["embedding"].numpy()


def assert_answers_like_the_saved_model(registry_root, version: int, images: list[bytes], rows: list[dict],
                                        ) -> np.ndarray:
    """Rows with probabilities and predicted_class equal the SavedModel's own answer (1e-5); returns that answer."""
    from dermpipe import config

    expected, _ = reference(registry_root, version, images)
    np.testing.assert_allclose(np.array([r["probabilities"] for r in rows]), expected, atol=1e-5)
    assert [r["predicted_class"] for r in rows] == [config.CLASSES[i] for i in expected.argmax(1)]
    return expected


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    registry_root: Path
    log_root: Path
    output: Path
    grpc_target: str = ""  # host:port of the gRPC API, when started with --grpc-port
    verify: str | bool = True  # with TLS: the CA file requests checks the server's certificate against

    def get(self, path: str, **kwargs) -> requests.Response:
        return requests.get(self.url + path, timeout=60, verify=self.verify, **kwargs)

    def post(self, path: str, **kwargs) -> requests.Response:
        return requests.post(self.url + path, timeout=60, verify=self.verify, **kwargs)


def start_server(registry_root: Path, log_root: Path, output: Path, *extra: str, timeout: float = 240,
                 grpc: bool = False, ca: Path | None = None) -> Server:
    """`python -m dermpipe.cli.main serve` in a real subprocess on a free loopback port (and, with grpc, its gRPC
    API on another); waits for /readyz. `ca`: the server runs with --tls-cert (in `extra`), checked against it."""
    port, grpc_port = free_port(), free_port() if grpc else 0
    command = [sys.executable, "-m", "dermpipe.cli.main", "serve", "--registry-root", str(registry_root),
               "--model-name", MODEL, "--port", str(port), "--log-root", str(log_root), "--grpc-port",
               str(grpc_port), *extra]
    handle = open(output, "wb")  # noqa: SIM115 - lives as long as the server
    process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT)
    server = Server(f"{'https' if ca else 'http'}://127.0.0.1:{port}", process, registry_root, log_root, output,
                    f"127.0.0.1:{grpc_port}" if grpc else "", str(ca) if ca else True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"dermpipe serve exited with {process.returncode}:\n{output.read_text()[-3000:]}")
        try:
            if requests.get(server.url + "/readyz", timeout=2, verify=server.verify).status_code == 200:
                return server
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    process.kill()
    raise RuntimeError(f"dermpipe serve not ready after {timeout}s:\n{output.read_text()[-3000:]}")


def stop_server(server: Server) -> int:
    server.process.terminate()
    try:
        return server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.process.kill()
        return server.process.wait()


@pytest.fixture(scope="session")
def serving_registry(tmp_path_factory) -> Path:
    return make_registry(tmp_path_factory.mktemp("registry"), {1: 0, 2: 1}, current=1, clinical=(2,))


@pytest.fixture(scope="session")
def server(serving_registry, tmp_path_factory):
    folder = tmp_path_factory.mktemp("serve")
    running = start_server(serving_registry, folder / "predictions", folder / "server.log",
                           "--poll-seconds", "0.3", "--flush-seconds", "0.2", "--max-instances", "4",
                           "--max-body-mb", "2", "--max-pixels", "4000000", "--max-wait-ms", "40",
                           "--grpc-max-message-mb", "8", grpc=True)
    yield running
    stop_server(running)


@pytest.fixture(scope="session")
def jpegs() -> list[bytes]:
    files = sorted(ISIC2020_IMAGES.glob("*.jpg"))[:6]
    if len(files) < 6:
        pytest.fail(f"real data kit missing: {ISIC2020_IMAGES} (CI lays ../shared beside the repository)")
    return [f.read_bytes() for f in files]
