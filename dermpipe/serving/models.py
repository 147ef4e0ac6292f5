"""The served models: a registry version loaded, checked and warmed up (load_version) behind one traced batch call on
decoded pixels (batch_runner), and ModelManager, which hot-reloads the version current.json names (loaded and warmed
up beside the old one, then swapped in) and caches a few explicitly requested versions. A metadata-fusion version (its
signatures take age_approx, sex and anatom_site_general) also gets each image's metadata; other versions ignore it."""

import io
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dermpipe import config
from dermpipe.deploy import registry
from dermpipe.serving.settings import ServingError

log = logging.getLogger("dermpipe.serve")


@dataclass
class ServedModel:
    """One loaded registry version: a batch runner over its serve_pixels signature plus what the log needs."""

    name: str
    version: int
    uri: str
    runner: Any  # pixels [N, S, S, 3] -> (serve_pixels outputs, pixel statistics [N, k]); see batch_runner
    image_size: int
    embedding_dim: int
    record: dict
    pca_mean: np.ndarray | None = None
    pca_components: np.ndarray | None = None
    loaded: Any = None  # keeps the SavedModel object (and so the signature's variables) alive
    signature_def: dict = field(default_factory=dict)
    metadata_inputs: bool = False  # a metadata-fusion model: serving_default also takes age_approx, sex, site
    clinical: Any = None  # dermpipe.model.profile.clinical.Clinical from the version's clinical.json, or None

    @property
    def gate_override(self) -> bool:
        """Deployed by a person's override of the gate (dermpipe.deploy.override): every answer says so."""
        return bool(self.record.get("gate_override"))

    @property
    def pca(self):
        """The reference PCA as an EmbeddingPCA (what the OOD score projects on), or None."""
        from dermpipe.model.profile.reference import EmbeddingPCA

        return None if self.pca_components is None else EmbeddingPCA(self.pca_mean, self.pca_components)

    def predict(self, images: list[np.ndarray], metas: list[dict | None] | None = None,
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(probabilities, embedding, pixel statistics) of a batch of decoded images (each float32 [S, S, 3], as
        serving.images.check_image decodes them): one graph call; a fusion model also gets each image's metadata
        (None or absent values: unknown)."""
        import tensorflow as tf

        from dermpipe.model.export import metadata_tensors

        extra = metadata_tensors(list(metas or [None] * len(images))) if self.metadata_inputs else {}
        out, stats = self.runner(tf.constant(np.stack(images), dtype=tf.float32), extra)
        return out["probabilities"].numpy(), out["embedding"].numpy(), stats.numpy()

    def summarise(self, embedding: np.ndarray) -> np.ndarray | None:
        """emb_0..emb_{k-1}: the embedding projected on the reference PCA, when the version has one."""
        if self.pca_components is None:
            return None
        return (embedding - self.pca_mean) @ self.pca_components.T


def _spec(tensor: Any) -> dict:
    from tensorflow.core.framework import types_pb2

    dims = [{"size": str(-1 if d is None else d)} for d in tensor.shape.as_list()]
    return {"dtype": types_pb2.DataType.Name(tensor.dtype.as_datatype_enum), "tensor_shape": {"dim": dims},
            "name": tensor.name or ""}


def batch_runner(pixels_signature, image_size: int, *, metadata: bool = False):
    """One traced call per batch of pixels decoded as serving_default decodes them (check_image, one decode per image
    in the request's thread): the model (serve_pixels) and the drift statistics (image_stats.pixel_statistics) on the
    same pixels, so the prediction log costs no second decode. Called as run(pixels, extra): extra is {} or, for a
    fusion model (metadata=True), export.metadata_tensors' three tensors."""
    import tensorflow as tf

    from dermpipe.data.image_stats import pixel_statistics
    from dermpipe.model.export import METADATA_SPECS

    extra_specs = {name: tf.TensorSpec([None], getattr(tf, dtype), name=name)
                   for name, dtype in METADATA_SPECS} if metadata else {}

    @tf.function(input_signature=[tf.TensorSpec([None, image_size, image_size, 3], tf.float32), extra_specs])
    def run(pixels, extra):
        return pixels_signature(image=pixels, **extra), pixel_statistics(pixels)

    return run


def load_version(registry_root: str, model_name: str, version: int) -> ServedModel:
    """Load a registry version, check its signatures and warm it up with a real JPEG."""
    import tensorflow as tf

    from dermpipe.data.images import bytes_decoder
    from dermpipe.model.export import BYTES_SIGNATURE, PIXELS_SIGNATURE, probe_jpeg, signature_takes_metadata

    uri = registry.version_dir(registry_root, model_name, version)
    loaded = tf.saved_model.load(uri)
    for wanted in (BYTES_SIGNATURE, PIXELS_SIGNATURE):
        if wanted not in loaded.signatures:
            raise RuntimeError(f"{uri}: the SavedModel has no {wanted} signature (has {list(loaded.signatures)}); "
                               "re-export it with dermpipe.model.export.export_serving_model")
    signature_def = {}
    for name, fn in loaded.signatures.items():
        inputs = {k: _spec(v) for k, v in fn.structured_input_signature[1].items()}
        outputs = {k: _spec(v) for k, v in fn.structured_outputs.items()}
        signature_def[name] = {"inputs": inputs, "outputs": outputs, "method_name": "tensorflow/serving/predict"}
    pixels = loaded.signatures[PIXELS_SIGNATURE]
    image_size = int(pixels.structured_input_signature[1]["image"].shape[1])
    fusion = signature_takes_metadata(pixels)
    served = ServedModel(name=model_name, version=version, uri=uri,
                         runner=batch_runner(pixels, image_size, metadata=fusion), image_size=image_size,
                         embedding_dim=0, record=registry.read_record(registry_root, model_name, version),
                         loaded=loaded, signature_def=signature_def, metadata_inputs=fusion)
    pca_path = f"{uri}/embedding_pca.npz"
    if tf.io.gfile.exists(pca_path):
        with tf.io.gfile.GFile(pca_path, "rb") as handle:
            pca = np.load(io.BytesIO(handle.read()))
            served.pca_mean = np.asarray(pca["mean"], np.float32)
            served.pca_components = np.asarray(pca["components"], np.float32)
    from dermpipe.model.profile.clinical import load_clinical

    served.clinical = load_clinical(uri)
    probabilities, embedding, _ = served.predict([bytes_decoder(image_size)(probe_jpeg()).numpy()])
    if probabilities.shape != (1, len(config.CLASSES)):
        raise RuntimeError(f"{uri}: warm-up answered probabilities of shape {probabilities.shape}; expected "
                           f"(1, {len(config.CLASSES)})")
    served.embedding_dim = int(embedding.shape[-1])
    if served.pca_components is not None and served.pca_components.shape[1] != served.embedding_dim:
        raise RuntimeError(f"{pca_path}: components have {served.pca_components.shape[1]} columns but the "
                           f"embedding has {served.embedding_dim}; re-write the profile for this model")
    return served


class ModelManager:
    """The current version (hot-reloaded from current.json) and a small cache of explicitly requested versions."""

    def __init__(self, registry_root: str, model_name: str, poll_seconds: float, on_reload=None) -> None:
        self.registry_root = registry_root
        self.model_name = model_name
        self.poll_seconds = poll_seconds
        self.current: ServedModel | None = None
        self.last_error = ""
        self._seen_pointer: dict | None = None
        self._others: dict[int, ServedModel] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._on_reload = on_reload or (lambda ok: None)

    def refresh(self) -> bool:
        """Load the version current.json names if it is not the one served; True when a new version was swapped in."""
        pointer = registry.read_current(self.registry_root, self.model_name)
        if pointer is None or pointer == self._seen_pointer:
            return False
        self._seen_pointer = pointer
        version = int(pointer["version"])
        if self.current is not None and self.current.version == version:
            return False
        try:
            model = self._others.get(version) or load_version(self.registry_root, self.model_name, version)
        except Exception as err:  # noqa: BLE001 - keep serving the old version
            self.last_error = f"version {version}: {err}"
            log.error("hot reload: could not load %s/%s version %d (%s); still serving version %s",
                      self.registry_root, self.model_name, version, err,
                      self.current.version if self.current else "none")
            self._on_reload(False)
            return False
        old, self.current = self.current, model
        self.last_error = ""
        log.info("serving %s version %d (was %s)", self.model_name, version, old.version if old else "none")
        self._on_reload(True)
        return True

    def start(self) -> None:
        self._thread = threading.Thread(target=self._poll, name="registry-poll", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.refresh()
            except Exception as err:  # noqa: BLE001 - a bad current.json must not stop polling
                self.last_error = str(err)
                log.error("registry poll: %s", err)

    def stop(self) -> None:
        self._stop.set()

    def loaded(self, version: int | None = None) -> ServedModel | None:
        """The version if it is already in memory (the current one for None), else None; no I/O, no lock."""
        current = self.current
        if version is None or (current is not None and current.version == version):
            return current
        return self._others.get(version)

    def get(self, version: int | None = None) -> ServedModel:
        """The version (None: the current one), loaded from the registry when it is not in memory yet."""
        found = self.loaded(version)
        if found is not None:
            return found
        if version is None:
            raise ServingError(503, f"no model version loaded yet from {self.registry_root}/{self.model_name}"
                                    f" ({self.last_error or 'no current.json'})")
        with self._lock:
            if version not in self._others:
                if version not in registry.versions(self.registry_root, self.model_name):
                    raise ServingError(404, f"model {self.model_name} has no version {version}; versions: "
                                            f"{registry.versions(self.registry_root, self.model_name)}")
                if len(self._others) >= 3:
                    self._others.pop(next(iter(self._others)))
                self._others[version] = load_version(self.registry_root, self.model_name, version)
            return self._others[version]

    def loaded_versions(self) -> list[int]:
        found = {m.version for m in self._others.values()}
        if self.current is not None:
            found.add(self.current.version)
        return sorted(found)

