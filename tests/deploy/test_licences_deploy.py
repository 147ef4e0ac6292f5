"""A version's training-image licences: dermpipe.json's `licences`, attribution.txt, the model card, the deploy
summary, and `dermpipe models list|show`, for a version trained on non-commercial images and one whose profile
recorded none."""

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from dermpipe import config
from dermpipe.cli.main import app
from dermpipe.data import licences
from dermpipe.deploy import deploy as deploy_stage


def _model(folder: Path, seed: int) -> Path:
    from dermpipe.model.zoo import build_classifier

    model, _ = build_classifier("simple_cnn", 32, 8, seed=seed)
    folder.mkdir(parents=True)
    model.save(folder / "model.keras")
    return folder


def _split(images: range, licence: str, attribution: str) -> pd.DataFrame:
    return pd.DataFrame({"image": [f"ISIC_{i:07d}" for i in images], "label": "NV",
                         "copyright_license": licence, "attribution": attribution})


def _profile(folder: Path, with_licences: bool) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    np.savez(folder / "embedding_pca.npz", mean=rng.normal(size=128), components=rng.normal(size=(3, 128)))
    if with_licences:  # what the profile stage writes from the run's splits
        tables = {"train": pd.concat([_split(range(0, 6), "CC-BY-NC", "ViDIR Group, Medical University of Vienna"),
                                      _split(range(6, 9), "CC-0", "Anonymous")]),
                  "val": _split(range(9, 11), "", ""),
                  "test": _split(range(11, 20), "CC-BY", "Hospital Clínic de Barcelona")}
        licences.write_training(tables, folder)
    return folder


@pytest.fixture(scope="module")
def registry_root(tmp_path_factory) -> str:
    tmp = tmp_path_factory.mktemp("licences")
    root = str(tmp / "registry")
    first = deploy_stage.publish(_model(tmp / "m1", 0), root, "m", {"model_name": "m"},
                                 _profile(tmp / "p1", True), champion_version=0)
    second = deploy_stage.publish(_model(tmp / "m2", 1), root, "m", {"model_name": "m"},
                                  _profile(tmp / "p2", False), champion_version=1)
    assert (first["version"], second["version"]) == (1, 2)
    (tmp / "results.json").write_text(json.dumps([first, second]))
    return root


def _results(root: str) -> list[dict]:
    return json.loads((Path(root).parent / "results.json").read_text())


def test_the_deploy_summary_says_what_the_training_images_allow(registry_root):
    first, second = _results(registry_root)
    assert first["commercial_use"] == "not allowed"
    assert first["licences"] == ("NON-COMMERCIAL: 6 of 11 images are licensed for non-commercial use only; "
                                 "licence unknown for 2 of 11 images")
    assert first["message"].endswith(f"training data: {first['licences']}")
    assert second["commercial_use"] == "unknown"
    assert second["licences"] == "licences not recorded: commercial use unknown"


def test_the_version_records_the_licences_and_an_attribution_file(registry_root):
    version = Path(registry_root) / "m" / "1"
    record = json.loads((version / "dermpipe.json").read_text())["licences"]
    assert record["images"] == 11 and record["trained_on_splits"] == ["train", "val"]  # test images are not counted
    assert record["licences"] == {"CC-BY-NC": 6, "CC-0": 3, "unknown": 2}
    assert (record["non_commercial"], record["unknown"], record["commercial_use"]) == (6, 2, "not allowed")
    assert record["splits"]["test"]["licences"] == {"CC-BY": 9}
    text = (version / "attribution.txt").read_text()
    assert text == licences.attribution_text({k: v for k, v in record.items()
                                              if k in licences.summarise(pd.DataFrame()).keys()})
    assert text.index("ViDIR Group, Medical University of Vienna (6, CC-BY-NC)") < text.index("Anonymous (3, CC-0)")
    assert json.loads((Path(registry_root) / "m" / "2" / "dermpipe.json").read_text())["licences"] is None
    assert not (Path(registry_root) / "m" / "2" / "attribution.txt").exists()


def test_the_model_card_shows_the_licences_and_the_limitation(registry_root):
    card = json.loads((Path(registry_root) / "m" / "1" / config.MODEL_CARD_JSON).read_text())
    assert card["training_data"]["licences"]["non_commercial"] == 6
    assert ("Trained on 6 of 11 images licensed for non-commercial use only (see the licences above): do not use "
            "this model commercially without clearing them.") in card["limitations"]
    assert "The licence of 2 of 11 training images is not recorded or not recognised" in " ".join(card["limitations"])
    html = (Path(registry_root) / "m" / "1" / config.MODEL_CARD_HTML).read_text()
    assert "Licences (per image, train + val)" in html and "ViDIR Group" in html
    unrecorded = json.loads((Path(registry_root) / "m" / "2" / config.MODEL_CARD_JSON).read_text())
    assert any(line.startswith("The training images' licences were not recorded (deployed without the profile's "
                               "licences.json)") for line in unrecorded["limitations"])


def test_models_list_and_show_name_the_non_commercial_version(registry_root):
    listed = CliRunner().invoke(app, ["models", "list", "--model-name", "m", "--registry-root", registry_root])
    assert listed.exit_code == 0, listed.output
    rows = {m.group(1): line for line in listed.output.splitlines() if (m := re.match(r"^\*?\s+(\d+)\s", line))}
    assert "LICENCE" in listed.output
    assert " non-commercial " in rows["1"] and " unknown " in rows["2"]
    assert "non-commercial: trained on images licensed for non-commercial use only" in listed.output
    assert "(version 1;" in listed.output and "(version 2;" in listed.output
    shown = CliRunner().invoke(app, ["models", "show", "1", "--model-name", "m", "--registry-root", registry_root])
    assert shown.exit_code == 0, shown.output
    assert ("licences: NON-COMMERCIAL: 6 of 11 images are licensed for non-commercial use only; licence unknown for "
            "2 of 11 images (CC-BY-NC 6, CC-0 3, unknown 2; attributions: ") in shown.output
    assert "attribution.txt" in shown.output
