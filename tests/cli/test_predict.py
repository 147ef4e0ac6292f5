"""`dermpipe predict` on real ISIC images, a truncated JPEG and a text file, from a registry version or a folder."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dermpipe import config
from dermpipe.cli.main import app

MODEL = config.MODEL_NAME


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory) -> Path:
    """An untrained simple_cnn at 32 px saved as a train task saves it (model.keras): its answers are arbitrary but
    deterministic, which is all a test of the plumbing needs."""
    from dermpipe.model.zoo import build_classifier

    folder = tmp_path_factory.mktemp("model")
    model, _ = build_classifier("simple_cnn", 32, len(config.CLASSES), seed=1)
    model.save(folder / "model.keras")
    return folder


@pytest.fixture(scope="module")
def registry_root(tmp_path_factory, model_folder) -> str:
    """A registry whose current version (1) holds the model."""
    from dermpipe.deploy import registry

    root = str(tmp_path_factory.mktemp("registry"))
    version = registry.allocate(root, MODEL)
    registry.commit(root, MODEL, version, model_folder, digest="test")
    registry.set_current(root, MODEL, version, reason="test")
    return root


@pytest.fixture(scope="module")
def images(tmp_path_factory, isic_sample) -> Path:
    """Three real ISIC 2019 JPEGs, one of them truncated to half its bytes, and a text file named like a JPEG."""
    folder = tmp_path_factory.mktemp("images")
    real = sorted((isic_sample / config.IMAGE_SUBDIR).glob("*.jpg"))[:3]
    for path in real:
        shutil.copyfile(path, folder / path.name)
    data = real[0].read_bytes()
    (folder / "broken.jpg").write_bytes(data[: len(data) // 2])
    (folder / "notes.jpg").write_text("not an image\n")
    return folder


def _answered(images: Path) -> list[str]:
    return sorted(str(p) for p in images.glob("ISIC_*.jpg"))


def test_the_registrys_current_version_answers_as_csv_and_lists_unreadable_files(registry_root, images):
    result = CliRunner().invoke(app, ["predict", str(images), "--registry-root", registry_root, "--format", "csv"])
    assert result.exit_code == 1, result.output  # 1: some files were unreadable, the rest answered
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    answered = [r for r in rows if not r["error"]]
    assert sorted(r["image"] for r in answered) == _answered(images)
    for row in answered:
        top = [(part.split()[0], float(part.split()[1])) for part in row["top3"].split("; ")]
        assert len(top) == 3 and top[0] == (row["predicted"], float(row["probability"]))
        assert row["predicted"] in config.CLASSES and top[0][1] >= top[1][1] >= top[2][1] > 0
    errors = {Path(r["image"]).name: r["error"] for r in rows if r["error"]}
    assert set(errors) == {"broken.jpg", "notes.jpg"}
    assert errors["broken.jpg"].startswith("corrupt or truncated JPEG")
    assert errors["notes.jpg"].startswith("not an image")


def test_a_model_folder_answers_the_same_as_the_registry_version_in_json(registry_root, model_folder, images):
    files = [str(p) for p in sorted(images.glob("ISIC_*.jpg"))]
    by_folder = CliRunner().invoke(app, ["predict", *files, "--model", str(model_folder), "--format", "json"])
    by_version = CliRunner().invoke(app, ["predict", *files, "--model", "1", "--registry-root", registry_root,
                                          "--format", "json"])
    assert by_folder.exit_code == 0 and by_version.exit_code == 0, by_folder.output + by_version.output
    folder, version = json.loads(by_folder.stdout), json.loads(by_version.stdout)
    assert folder["model"] == str(model_folder) and version["model"].startswith(f"{MODEL} version 1 (")
    assert folder["unreadable"] == [] and [p["image"] for p in folder["predictions"]] == files
    assert [p["top"] for p in folder["predictions"]] == [p["top"] for p in version["predictions"]]
    assert all(np.isclose(p["probability"], p["top"][0][1]) and p["label"] == p["top"][0][0]
               for p in folder["predictions"])


def test_the_table_and_gradcam_overlays(registry_root, images, tmp_path):
    from PIL import Image

    first = sorted(images.glob("ISIC_*.jpg"))[0]
    result = CliRunner().invoke(app, ["predict", str(first), str(images / "missing.jpg"), "--registry-root",
                                      registry_root, "--gradcam", str(tmp_path / "cam")])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"model: {MODEL} version 1") and lines[2].split()[:3] == ["image", "predicted",
                                                                                        "probability"]
    assert lines[1] == ("decision from: none: no decision, version 1 was deployed without its profile's "
                        "clinical.json; redeploy it from a run with a profile step")
    assert lines[3].startswith(str(first)) and len(lines) == 4
    assert f"unreadable: {images / 'missing.jpg'}: no such file or folder" in result.stderr
    overlay = tmp_path / "cam" / f"{first.stem}.gradcam.png"
    with Image.open(overlay) as image:
        assert image.size == (32, 32) and image.mode == "RGB"


def test_no_current_version_exits_2_and_says_what_to_do(tmp_path, images):
    result = CliRunner().invoke(app, ["predict", str(images), "--registry-root", str(tmp_path)])
    assert result.exit_code == 2
    assert "no version is current; train and deploy one with `dermpipe run`" in result.stderr


@pytest.fixture(scope="module")
def clinical_folder(tmp_path_factory, model_folder, isic_sample) -> Path:
    """The model folder with a clinical.json and PCA fitted on 60 ISIC 2019 images: melanoma_sens95 refers every
    in-distribution image (threshold 0), melanoma_sens90 none (threshold 1)."""
    import keras

    from dermpipe.model.evaluation.operating_points import OperatingPoint
    from dermpipe.model.profile.clinical import Clinical
    from dermpipe.model.profile.features import decode_images
    from dermpipe.model.profile.ood import calibrate, fit_detector
    from dermpipe.model.profile.reference import fit_embedding_pca

    folder = tmp_path_factory.mktemp("clinical")
    shutil.copyfile(model_folder / "model.keras", folder / "model.keras")
    paths = sorted((isic_sample / config.IMAGE_SUBDIR).glob("*.jpg"))[:60]
    embeddings = decode_images(paths, 32, keras.models.load_model(folder / "model.keras")).embeddings
    pca = fit_embedding_pca(embeddings, 4)
    pca.save(folder / "embedding_pca.npz")
    detector = fit_detector(pca, embeddings)
    detector = calibrate(detector, detector.score(pca, embeddings), 0.99)
    points = (OperatingPoint("melanoma_sens95", 0.0, 0.95), OperatingPoint("melanoma_sens90", 1.0, 0.90))
    (folder / "clinical.json").write_text(json.dumps(Clinical(points, detector, {}).as_dict()))
    return folder


def test_the_decision_at_the_default_and_a_named_operating_point(clinical_folder, images, tmp_path):
    from PIL import Image
    from sklearn.datasets import load_sample_image

    noise = tmp_path / "flower.png"  # a holiday photo: not what the model was made for
    Image.fromarray(load_sample_image("flower.jpg")).save(noise)
    first = sorted(images.glob("ISIC_*.jpg"))[0]
    result = CliRunner().invoke(app, ["predict", str(first), str(noise), "--model", str(clinical_folder),
                                      "--format", "csv"])
    assert result.exit_code == 0, result.output
    rows = {Path(r["image"]).name: r for r in csv.DictReader(io.StringIO(result.stdout))}
    assert rows[first.name]["decision"] == "refer_melanoma" and rows["flower.png"]["decision"] == "out_of_distribution"
    assert {r["operating_point"] for r in rows.values()} == {"melanoma_sens95"}
    assert ">= melanoma_sens95's threshold 0.000" in rows[first.name]["decision_reason"]
    assert "outside what the model was trained on" in rows["flower.png"]["decision_reason"]
    assert float(rows["flower.png"]["ood_score"]) > float(rows[first.name]["ood_score"])
    named = CliRunner().invoke(app, ["predict", str(first), "--model", str(clinical_folder), "--operating-point",
                                     "melanoma_sens90"])
    assert named.exit_code == 0 and named.stdout.splitlines()[2].split()[3] == "decision"
    assert named.stdout.splitlines()[3].split()[3] == "routine"
    assert named.stdout.splitlines()[1] == "decision from: clinical.json beside the model"
    unknown = CliRunner().invoke(app, ["predict", str(first), "--model", str(clinical_folder), "--operating-point",
                                       "sens50"])
    assert unknown.exit_code == 2 and "no operating point 'sens50'" in unknown.stderr


def test_a_model_without_clinical_json_has_no_decision_and_says_why(model_folder, images, dermpipe_home):
    first = sorted(images.glob("ISIC_*.jpg"))[0]
    result = CliRunner().invoke(app, ["predict", str(first), "--model", str(model_folder), "--format", "json"])
    answer = json.loads(result.stdout)
    assert answer["predictions"][0]["decision"] == ""
    why = (f"no clinical.json beside the model and no lineage store at {dermpipe_home / 'lineage.sqlite'} to find "
           "its profile; run the pipeline through its profile step")
    assert answer["decision_from"].startswith(f"none: no decision, {why}")
    refused = CliRunner().invoke(app, ["predict", str(first), "--model", str(model_folder), "--operating-point",
                                       "melanoma_sens95"])
    assert refused.exit_code == 2 and f"no operating points: {why}" in refused.stderr
    csv_answer = CliRunner().invoke(app, ["predict", str(first), "--model", str(model_folder), "--format", "csv"])
    assert f"decision from: none: no decision, {why}" in csv_answer.stderr


def test_a_model_folder_unknown_to_the_lineage_store_says_so(model_folder, images, dermpipe_home):
    from dermpipe.lineage import store

    with store.connect(dermpipe_home / "lineage.sqlite"):
        pass  # an empty store: some other run's, not the one that made this model
    result = CliRunner().invoke(app, ["predict", str(sorted(images.glob("ISIC_*.jpg"))[0]), "--model",
                                      str(model_folder), "--format", "json"])
    assert f"{model_folder} is not a model artifact recorded in the lineage store" in json.loads(
        result.stdout)["decision_from"]
    unknown = CliRunner().invoke(app, ["predict", str(images), "--model", "no-such-run"])
    assert unknown.exit_code == 2 and "or the id of a local run (`dermpipe runs`)" in unknown.stderr


def test_a_sideways_camera_jpeg_answers_as_its_stripped_upright_copy(registry_root, images, tmp_path):
    """The server strips metadata and applies the EXIF orientation before its decode; `dermpipe predict` too."""
    from PIL import Image
    from private_images import private_jpeg

    from dermpipe.data.image_privacy import strip_metadata

    with Image.open(sorted(images.glob("ISIC_*.jpg"))[0]) as image:
        camera = private_jpeg(np.asarray(image.convert("RGB"))[:, :200], orientation=6)  # not square: turning shows
    (tmp_path / "camera.jpg").write_bytes(camera)
    (tmp_path / "stripped.jpg").write_bytes(strip_metadata(camera).data)
    result = CliRunner().invoke(app, ["predict", str(tmp_path / "camera.jpg"), str(tmp_path / "stripped.jpg"),
                                      "--registry-root", registry_root, "--format", "json"])
    assert result.exit_code == 0, result.output
    camera_answer, stripped_answer = json.loads(result.stdout)["predictions"]
    assert camera_answer["top"] == stripped_answer["top"]
