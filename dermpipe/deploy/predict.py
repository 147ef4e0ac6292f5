"""Ask a trained model about image files: `dermpipe predict`'s logic (the CLI only parses flags and prints).

The model is a registry version (the current one by default, what `dermpipe serve` serves) or a model folder (a
train task's Model artifact, or any folder holding model.keras). Images go through the same validator as merge and
the server (dermpipe.data.image_check) and the same decode as the SavedModel's serving signature
(dermpipe.data.images.decode_resize_bytes), after the server's metadata stripping (dermpipe.data.image_privacy: a
sideways phone photo is turned upright by its EXIF orientation), so the answer is the one the server would give, and
a Grad-CAM overlay holds pixels only. A file that cannot be
read is listed with the reason and the others are still answered: one broken file must not hide a folder's results.
The model may also be a recorded local run's id (its profiled model). The answer carries the decision
(refer_melanoma | routine | out_of_distribution) at the default or a named operating point, and the OOD score, as
`dermpipe serve` does (dermpipe.model.profile.clinical), wherever the model's clinical files are found: clinical.json
and embedding_pca.npz beside model.keras (a registry version), else the profile of the run that made the model
(dermpipe.deploy.clinical_source); without one the answer says why it has no decision.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from dermpipe import config, storage
from dermpipe.data.image_check import inspect_image_bytes
from dermpipe.data.image_privacy import MetadataError, encode_png, strip_metadata
from dermpipe.data.schema import IMAGE_SUFFIXES
from dermpipe.deploy import registry
from dermpipe.deploy.clinical_source import ClinicalSource, for_model_folder, run_model

ACCEPTED_FORMATS = ("JPEG", "PNG", "BMP", "GIF")  # what tf.io.decode_image (the model's decoder) reads
MAX_PIXELS = 64_000_000  # merge's decompression-bomb bound: a real dermoscopy image is far below it
TOP = 3


class PredictError(ValueError):
    """The model cannot be found or loaded; the message names the registry or folder and what to do."""


@dataclass(frozen=True)
class Prediction:
    image: str
    label: str
    probability: float
    top: list[tuple[str, float]]  # the TOP most probable classes, most probable first
    gradcam: str = ""  # the overlay's path with --gradcam
    decision: str = ""  # refer_melanoma | routine | out_of_distribution; "" when the model has no clinical.json
    decision_reason: str = ""  # why, in one line (e.g. MEL is the most probable class but below the threshold)
    operating_point: str = ""
    ood_score: float | None = None


@dataclass(frozen=True)
class Unreadable:
    image: str
    reason: str


@dataclass
class Answer:
    model: str  # what answered, in words: "isic2019 version 3 (<uri>)" or the folder
    decision_from: str = ""  # where the decision's operating points came from, or why there is no decision
    predictions: list[Prediction] = field(default_factory=list)
    unreadable: list[Unreadable] = field(default_factory=list)
    gate_override: bool = False  # a version deployed by a person's override of the gate (its dermpipe.json says so)


def deployed_by_override(location: str) -> bool:
    """Whether the dermpipe.json beside model.keras records a gate override (False without one)."""
    import json

    record = storage.join(location.rsplit("/", 1)[0] if "/" in location else ".", "dermpipe.json")
    try:
        return bool(json.loads(storage.read_text(record)).get("gate_override"))
    except (FileNotFoundError, ValueError):
        return False


def resolve_model(model: str | None, registry_root: str, model_name: str = config.MODEL_NAME,
                  ) -> tuple[str, str, ClinicalSource]:
    """(model.keras location, description, where its clinical.json is): `model` None -> the registry's current
    version, digits -> that registry version, a folder holding model.keras (or the .keras file itself), else a
    recorded run's id."""
    if model is None or model.isdigit():
        version = registry.current_version(registry_root, model_name) if model is None else int(model)
        if version is None:
            raise PredictError(f"{registry.model_dir(registry_root, model_name)}: no version is current; train and "
                               "deploy one with `dermpipe run`, or pass --model VERSION or --model FOLDER")
        if not registry.is_servable(registry_root, model_name, version):
            known = ", ".join(map(str, registry.versions(registry_root, model_name))) or "none"
            raise PredictError(f"{registry.model_dir(registry_root, model_name)}: no committed version {version} "
                               f"(servable versions: {known})")
        uri = registry.version_dir(registry_root, model_name, version)
        found = ClinicalSource(uri, "clinical.json beside the model")
        if not storage.exists(storage.join(uri, "clinical.json")):
            found = ClinicalSource("", f"version {version} was deployed without its profile's clinical.json; "
                                    "redeploy it from a run with a profile step")
        return storage.join(uri, "model.keras"), f"{model_name} version {version} ({uri})", found
    path = Path(model).expanduser()
    file = path if path.suffix == ".keras" else path / "model.keras"
    if file.is_file():
        return str(file), str(path), for_model_folder(str(file.parent))
    recorded = None if path.exists() else run_model(model)
    if recorded is None:
        raise PredictError(f"--model {model}: no model.keras there; expected a registry version number, a model "
                           "folder (a train task's model artifact, or a registry version folder) or the id of a "
                           "local run (`dermpipe runs`)")
    folder, found = recorded
    return storage.join(folder, "model.keras"), f"run {model}'s model ({folder})", found


def image_files(paths: Iterable[str | Path]) -> tuple[list[Path], list[Unreadable]]:
    """The image files named (folders: their .jpg/.jpeg/.png files, sorted), and the names that are not there."""
    files: list[Path] = []
    missing: list[Unreadable] = []
    for given in map(Path, paths):
        if given.is_dir():
            files += sorted(p for p in given.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        elif given.is_file():
            files.append(given)
        else:
            missing.append(Unreadable(str(given), "no such file or folder"))
    return files, missing


def read_image(path: Path) -> bytes | Unreadable:
    """The file's bytes if it is a whole image the model's decoder reads, else why not (merge's and the server's
    validator: empty, not an image, corrupt or truncated, a decompression bomb, an unsupported format)."""
    try:
        data = path.read_bytes()
    except OSError as err:
        return Unreadable(str(path), f"cannot read the file ({err.strerror or err})")
    check = inspect_image_bytes(data, max_pixels=MAX_PIXELS, formats=ACCEPTED_FORMATS)
    if not check.problem:
        try:
            return strip_metadata(data).data  # what the server decodes
        except MetadataError as err:
            return Unreadable(str(path), f"corrupt {check.format} ({err})")
    detail = f" ({check.detail})" if check.detail else ""
    what = {"empty": "empty file (0 bytes)", "not_an_image": "not an image", "wrong_format":
            f"{check.format} is not read by the model; expected {', '.join(ACCEPTED_FORMATS)}",
            "bomb": f"over {MAX_PIXELS} pixels (decompression-bomb guard)", "no_pixels": "no pixels"}
    return Unreadable(str(path), what.get(check.problem, f"corrupt or truncated {check.format or 'image'}") + detail)


def _load(location: str):
    """The Keras model (Grad-CAM needs its layers), copied to a temporary file first when it is in Cloud Storage."""
    from dermpipe.model.zoo import load_classifier

    if not storage.is_gcs(location):
        return load_classifier(location, compile=False)
    with tempfile.TemporaryDirectory() as tmp:
        return load_classifier(storage.download(location, Path(tmp) / "model.keras"), compile=False)


def _pixels(images: Sequence[bytes], image_size: int) -> np.ndarray:
    import tensorflow as tf

    from dermpipe.data.images import decode_resize_bytes

    return np.stack([decode_resize_bytes(tf.constant(data), image_size).numpy() for data in images])


def _answers(paths: list[Path], probabilities: np.ndarray) -> list[Prediction]:
    predictions = []
    for path, row in zip(paths, probabilities, strict=True):
        order = np.argsort(-row)[:TOP]
        top = [(config.CLASSES[i], round(float(row[i]), 4)) for i in order]
        predictions.append(Prediction(str(path), top[0][0], top[0][1], top))
    return predictions


def _gradcam(model, pixels: np.ndarray, predictions: list[Prediction], paths: list[Path], folder: Path,
             ) -> list[Prediction]:
    """One overlay PNG per image (<folder>/<image stem>.gradcam.png) for its predicted class."""
    from dermpipe.model.evaluation.gradcam import gradcam_maps, overlay

    folder.mkdir(parents=True, exist_ok=True)
    maps = gradcam_maps(model, pixels, [config.CLASSES.index(p.label) for p in predictions])
    done = []
    for prediction, path, image, heat in zip(predictions, paths, pixels, maps, strict=True):
        out = folder / f"{path.stem}.gradcam.png"
        out.write_bytes(encode_png(overlay(image, heat)))
        done.append(replace(prediction, gradcam=str(out)))
    return done


def _clinical(found: ClinicalSource, operating_point: str | None):
    """(Clinical, EmbeddingPCA) of the clinical files found for the model, or (None, None) without one; a named
    operating point must be one it stores."""
    from dermpipe.model.profile.clinical import load_clinical
    from dermpipe.model.profile.reference import PCA_FILE, EmbeddingPCA

    folder = found.folder
    clinical = load_clinical(folder) if folder else None
    if clinical is None:
        if operating_point:
            raise PredictError(f"--operating-point {operating_point}: no operating points: {found.origin}")
        return None, None
    try:
        clinical.point(operating_point)
    except KeyError as err:
        raise PredictError(f"--operating-point {operating_point}: {err.args[0]}") from None
    pca_file = f"{folder}/{PCA_FILE}"
    return clinical, EmbeddingPCA.load(pca_file) if storage.exists(pca_file) else None


def _decided(predictions: list[Prediction], decisions: list[dict]) -> list[Prediction]:
    return [replace(p, decision=d["decision"] or "", decision_reason=d["decision_reason"],
                    operating_point=d["operating_point"], ood_score=None if
                    d["ood_score"] is None else round(d["ood_score"], 4)) for p, d in zip(predictions, decisions,
                                                                                          strict=True)]


def predict(paths: Iterable[str | Path], model: str | None = None, *, registry_root: str | None = None,
            model_name: str = config.MODEL_NAME, gradcam_dir: Path | None = None, batch_size: int = 32,
            operating_point: str | None = None) -> Answer:
    """Predicted class, its probability, the top 3 and (with clinical.json) the decision for every readable image;
    the others with the reason."""
    import keras

    from dermpipe.model.export import EMBEDDING_LAYER
    from dermpipe.model.metadata_inputs import image_size, model_inputs

    location, described, found = resolve_model(model, registry_root or str(config.default_registry_root()),
                                               model_name)
    clinical, pca = _clinical(found, operating_point)
    files, missing = image_files(paths)
    origin = found.origin if clinical is not None else f"none: no decision, {found.origin}"
    answer = Answer(described, decision_from=origin, unreadable=missing, gate_override=deployed_by_override(location))
    readable: list[tuple[Path, bytes]] = []
    for path in files:
        checked = read_image(path)
        if isinstance(checked, Unreadable):
            answer.unreadable.append(checked)
        else:
            readable.append((path, checked))
    if not readable:
        return answer
    keras_model = _load(location)
    size = image_size(keras_model)
    heads = keras.Model(keras_model.input, [keras_model.output, keras_model.get_layer(EMBEDDING_LAYER).output])
    for start in range(0, len(readable), batch_size):
        batch = readable[start:start + batch_size]
        pixels = _pixels([data for _, data in batch], size)
        probabilities, embedding = map(np.asarray, heads.predict(model_inputs(keras_model, pixels, None), verbose=0))
        found = _answers([path for path, _ in batch], probabilities)
        if clinical is not None:
            found = _decided(found, clinical.decide(probabilities, embedding, pca, operating_point))
        if gradcam_dir is not None:
            found = _gradcam(keras_model, pixels, found, [path for path, _ in batch], gradcam_dir)
        answer.predictions += found
    return answer
