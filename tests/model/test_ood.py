"""The OOD score: calibrated on validation so ~95 % pass; images unlike the training set score higher.

Real kits: the embedding comes from an untrained simple_cnn with fixed weights (seed 0, 64 px), a fixed random
feature extractor, as in test_drift_real. ISIC 2019 sample images are mostly in-distribution, the download-free
non-dermoscopy set (photos, crops, synthetic images) is mostly flagged, and the ISIC 2020 sample is reported apart.
"""

import json

import numpy as np
import pandas as pd
import pytest

from dermpipe.model.profile.ood import OODDetector, calibrate, fit_detector, flagged_rate
from dermpipe.model.profile.ood_set import ood_images
from dermpipe.model.profile.reference import fit_embedding_pca


def _gaussian(n: int, shift: float = 0.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    basis = np.random.default_rng(99).normal(size=(4, 32))
    return rng.normal(size=(n, 4)) @ basis + 0.1 * rng.normal(size=(n, 32)) + shift


def test_calibration_passes_the_requested_share_and_far_images_score_higher():
    train, val, far = _gaussian(500), _gaussian(400, seed=1), _gaussian(100, shift=3.0, seed=2)
    pca = fit_embedding_pca(train, 4)
    detector = calibrate(fit_detector(pca, train), fit_detector(pca, train).score(pca, val), 0.95)
    assert 1 - flagged_rate(detector, detector.score(pca, val)) == pytest.approx(0.95, abs=0.01)
    assert flagged_rate(detector, detector.score(pca, _gaussian(400, seed=3))) < 0.12
    assert flagged_rate(detector, detector.score(pca, far)) > 0.95
    assert np.median(detector.score(pca, far)) > 2 * np.median(detector.score(pca, val))


def test_off_subspace_images_are_caught_by_the_residual():
    """An image whose projection looks ordinary but lies off the PCA subspace still scores high."""
    train = _gaussian(500)
    pca = fit_embedding_pca(train, 4)
    detector = calibrate(fit_detector(pca, train), fit_detector(pca, train).score(pca, _gaussian(300, seed=1)))
    orthogonal = np.linalg.svd(pca.components.astype(float), full_matrices=True)[2][-1]  # a direction PCA ignores
    odd = train[:50] + 5 * orthogonal
    assert np.allclose(pca.project(odd), pca.project(train[:50]), atol=1e-3)
    assert flagged_rate(detector, detector.score(pca, odd)) == 1.0


def test_a_lower_pass_rate_gives_a_lower_threshold_and_round_trips():
    train, val = _gaussian(300), _gaussian(200, seed=1)
    pca = fit_embedding_pca(train, 4)
    fitted = fit_detector(pca, train)
    scores = fitted.score(pca, val)
    assert calibrate(fitted, scores, 0.8).threshold < calibrate(fitted, scores, 0.99).threshold
    detector = calibrate(fitted, scores)
    again = OODDetector.from_dict(json.loads(json.dumps(detector.as_dict())))
    np.testing.assert_allclose(again.score(pca, val), scores)
    with pytest.raises(ValueError, match="ood_pass_rate = 1.0"):
        calibrate(fitted, scores, 1.0)
    with pytest.raises(ValueError, match=r"missing \['threshold'\]"):
        OODDetector.from_dict({k: v for k, v in detector.as_dict().items() if k != "threshold"})


def test_the_ood_set_is_deterministic_and_needs_no_download():
    first, second = ood_images(seed=0), ood_images(seed=0)
    assert [n for n, _ in first] == [n for n, _ in second] and len(first) >= 25
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(first, second, strict=True))
    assert {"china", "flower", "grace_hopper", "noise", "checkerboard"} <= {n for n, _ in first}
    assert all(image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3 for _, image in first)


@pytest.fixture(scope="module")
def profiled(isic_sample, tmp_path_factory):
    """profile_model on the ISIC 2019 sample with its labels: clinical.json beside the drift profile."""
    import keras

    from dermpipe import config
    from dermpipe.model.profile.features import image_key, list_images
    from dermpipe.model.profile.stage import ProfileParams, profile_model
    from dermpipe.model.zoo import build_classifier

    out = tmp_path_factory.mktemp("profile")
    keras.utils.set_random_seed(0)
    model, _ = build_classifier("simple_cnn", 64, 8, seed=0)
    model.save(out / "model.keras")
    images = list_images(isic_sample / "ISIC_2019_Training_Input")
    truth = pd.read_csv(isic_sample / "ISIC_2019_Training_GroundTruth.csv")
    truth["image"] = truth["image"].map(image_key)
    truth["label_index"] = truth[list(config.CLASSES)].to_numpy().argmax(axis=1)
    table = pd.DataFrame({"image": [image_key(str(p)) for p in images],
                          "path": [p.relative_to(isic_sample).as_posix() for p in images]}).merge(
        truth[["image", "label_index"]], on="image", how="left")
    table = table.sample(frac=1.0, random_state=0).reset_index(drop=True)
    tables = {"train": table.iloc[:285], "val": table.iloc[285:380], "test": table.iloc[380:]}
    info = profile_model(out / "model.keras", isic_sample, tables, out / "profile", 5, ProfileParams())
    return out, info, tables


def test_profile_writes_clinical_json_on_the_real_sample(profiled):
    from dermpipe.model.profile.clinical import load_clinical

    out, info, _ = profiled
    clinical = load_clinical(str(out / "profile"))
    assert clinical is not None and clinical.as_dict() == json.loads(json.dumps(info["clinical"]))
    point = clinical.default_point
    assert point.name == "melanoma_sens95" and point.chosen_on == "val"
    assert point.chosen["sensitivity"] >= 0.95 and point.chosen["positives"] > 10  # hit where it was chosen
    assert {"sensitivity_lower", "sensitivity_upper", "specificity"} <= set(point.test)
    ood = clinical.report["ood"]
    for name, sets in ood["candidates"].items():
        print(f"\n{name:13s}", *(f"{s}: AUROC {f['auroc']:.3f} FPR@95 {f['fpr_at_95_tpr']:.3f}"
                                  for s, f in sets.items()))
    print(f"\nserved {ood['served_score']} ({ood['chosen_by']})")
    print(f"\nISIC 2019 sample: val pass {ood['val_pass_rate']:.3f}, test false-refer "
          f"{ood['test_false_refer_rate']:.3f}; far set ({ood['far_set_size']}) detected "
          f"{ood['far_set_detection_rate']:.3f}; melanoma threshold {point.threshold:.4f}: test sensitivity "
          f"{point.test['sensitivity']:.3f} [{point.test['sensitivity_lower']:.3f}, "
          f"{point.test['sensitivity_upper']:.3f}]")
    assert ood["val_pass_rate"] >= 0.94
    assert ood["test_false_refer_rate"] < 0.15  # ISIC 2019 images: mostly in-distribution
    # 11/95 flagged: more than the 5 % intended, beyond the interval, and the report says so
    assert ood["threshold_holds_on_test"] is (ood["test_false_refer_lower"] <= 0.05)
    assert f"{round(ood['test_false_refer_rate'] * 95)}/95 test images flagged" in ood["transfer_note"]
    assert ood["far_set_detection_rate"] > 0.8  # non-dermoscopy images: mostly flagged
    assert set(ood["candidates"]) == {"msp", "energy", "mahalanobis", "knn", "pca_residual"}
    assert all(set(sets) == {"far", "new_device"} and 0 <= sets["far"]["auroc"] <= 1 and sets["far"]["n"] == 30
               and sets["new_device"]["n"] == 95 for sets in ood["candidates"].values())
    assert clinical.ood.method == ood["served_score"] and ood["chosen_by"].startswith(ood["served_score"])
    stored = info["clinical"]["ood"]
    assert stored["score"] == ood["served_score"] and stored["candidates"] == ood["candidates"]


def test_isic2020_is_reported_separately(profiled, isic_sample):
    """Another population and year (and 512 px JPEGs): reported, not asserted either way beyond being a rate."""
    import keras

    from dermpipe.model.profile.clinical import load_clinical
    from dermpipe.model.profile.features import decode_images, list_images
    from dermpipe.model.profile.reference import EmbeddingPCA

    out, _, _ = profiled
    clinical = load_clinical(str(out / "profile"))
    pca = EmbeddingPCA.load(out / "profile" / "embedding_pca.npz")
    model = keras.models.load_model(out / "model.keras")
    outputs = decode_images(list_images(isic_sample.parent / "isic2020-sample" / "images"), 64, model)
    rate = flagged_rate(clinical.ood, clinical.ood.score(pca, outputs.embeddings, outputs.probabilities))
    print(f"\nISIC 2020 sample: {len(outputs.embeddings)} images, flagged out of distribution {rate:.3f}")
    assert len(outputs.embeddings) == 300 and 0.0 <= rate <= 1.0


def test_a_near_folder_given_by_the_user_chooses_the_score(profiled, isic_sample):
    """ood_near_folder (here the ISIC 2020 sample: another population) becomes the set the score is chosen on; the
    simulated new device is still measured and reported."""
    from dermpipe.model.profile.stage import ProfileParams, profile_model

    out, _, tables = profiled
    folder = isic_sample.parent / "isic2020-sample" / "images"
    info = profile_model(out / "model.keras", isic_sample, tables, out / "profile-near", 5,
                         ProfileParams(ood_near_folder=str(folder)))
    ood = info["clinical"]["ood"]
    assert ood["chosen_on"] == "near_folder" and "'near_folder' set" in ood["chosen_by"]
    served = ood["candidates"][ood["served_score"]]
    assert set(served) == {"far", "new_device", "near_folder"} and served["near_folder"]["n"] == 300
    best = min(f["near_folder"]["fpr_at_95_tpr"] for f in ood["candidates"].values()
               if f["far"]["fpr_at_95_tpr"] <= 0.1)
    assert served["near_folder"]["fpr_at_95_tpr"] == best and ood["near_folder_set_size"] == 300


def test_an_empty_near_folder_is_refused_by_name(tmp_path):
    from dermpipe.model.profile.stage import near_folder_images

    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(FileNotFoundError, match=f"ood_near_folder = '{tmp_path}': no .jpg"):
        near_folder_images(str(tmp_path))
