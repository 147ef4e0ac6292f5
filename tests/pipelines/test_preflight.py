"""Pre-flight: each stage's own check, called before anything starts, quick and without TensorFlow or kfp."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import zipfile

import pytest

from dermpipe.model.backbones import BACKBONES
from dermpipe.pipelines.preflight import PreflightError, preflight, problems, stage_params


def test_stage_params_are_built_from_the_parameter_table():
    stages = stage_params({"source": "demo", "split_seed": 7, "image_size": 32, "backbone": "simple_cnn"})
    assert list(stages)[:5] == ["ingest", "merge", "split", "prepare", "train"]
    assert (stages["split"].seed, stages["prepare"].seed) == (7, 7)
    assert (stages["prepare"].image_size, stages["train"].image_size, stages["train"].backbone) == (32, 32,
                                                                                                   "simple_cnn")
    assert stages["train"].epochs == 10  # not given: the stage's default


def test_the_default_parameters_and_the_real_sample_pass(isic_sample):
    assert problems({}) == []
    assert problems({"source": str(isic_sample), "backbone": "resnet50", "folds": 5}) == []


@pytest.mark.parametrize(("params", "expected"), [
    ({"source": "/no/such/folder"}, "ingest: source '/no/such/folder': it does not exist; expected 'demo', an "
                                    "existing folder, a .zip archive"),
    ({"source": "kaggle:isic-2019"}, "ingest: kaggle:isic-2019: expected kaggle:<owner>/<dataset>, e.g. "
                                     "kaggle:andrewmvd/isic-2019"),
    ({"source": "isic: "}, "ingest: isic: needs a collection id or a search query"),
    ({"source": "gs:///prefix"}, "ingest: 'gs:///prefix': expected gs://BUCKET or gs://BUCKET/PREFIX"),
    ({"backbone": "efficientnet_b9"}, f"train: backbone 'efficientnet_b9' is not supported; choose one of "
                                      f"{list(BACKBONES)}"),
    ({"test_size": 0.6}, "split: split size 0.6 is out of range; expected a fraction in (0, 0.5)"),
    ({"folds": 1}, "split: folds=1: expected 0 (no cross-validation folds) or at least 2"),
    ({"split_method": "random"}, "split: split parameter method='random' is not supported; choose one of "
                                 "['hash', 'stratified', 'file']"),
    ({"benchmark_set": "isic@1"}, "resolve_champion: benchmark_set='isic@1': expected NAME, NAME@vN or the URI"),
    ({"image_size": 2}, "prepare: image_size=2: expected the training resolution in pixels (e.g. 224)"),
    ({"shard_size_mb": 0.0}, "prepare: shard size must be positive, got 0.0 bytes"),
    ({"batch_size": 0}, "train: train parameter batch_size=0: expected at least 1"),
    ({"invalid_images": "keep"}, "merge: merge parameter invalid_images='keep' is not supported; choose one of "
                                 "['drop', 'fail']"),
])
def test_each_stage_refuses_with_its_own_message(params, expected):
    found = problems(params)
    assert found[0].startswith(expected), found
    assert len(found) == (2 if "image_size" in params else 1), found  # image_size feeds prepare and train


def test_a_split_file_is_checked_where_the_run_reads_it(tmp_path):
    """method=file needs the file; a local run checks the path and its columns here, a cluster run wants gs://."""
    good = tmp_path / "split.csv"
    good.write_text("image,split\nISIC_1,train\n")
    bad = tmp_path / "bad.csv"
    bad.write_text("image_id,fold\nISIC_1,train\n")
    assert problems({"split_method": "file", "split_file": str(good)}) == []
    assert problems({"split_method": "file"})[0].startswith("split: split method=file needs split_file")
    found = problems({"split_method": "file", "split_file": str(bad)})
    assert found[0].startswith(f"split: split file {bad}: missing column(s) ['image', 'split']; found ['image_id', "
                               f"'fold']"), found
    assert "no such file" in problems({"split_method": "file", "split_file": str(tmp_path / "no.csv")})[0]
    remote = problems({"split_method": "file", "split_file": str(good)}, local=False)
    assert "the cluster's split task cannot read" in remote[0] and "gs://" in remote[0]
    assert problems({"split_method": "file", "split_file": "gs://bucket/split.csv"}, local=False) == []
    ignored = problems({"split_file": str(good)})
    assert ignored[0].startswith(f"split: split_file='{good}' is set but split method='hash'"), ignored


def test_every_problem_is_named_at_once():
    with pytest.raises(PreflightError) as err:
        preflight({"source": "/no/such", "backbone": "vgg", "val_size": 0.0})
    assert [line.split(":")[0] for line in str(err.value).splitlines()] == ["ingest", "split", "train"]


def test_a_file_that_is_not_a_zip_is_named_as_such(tmp_path):
    text = tmp_path / "data.zip"
    text.write_text("not a zip")
    assert problems({"source": str(text)}) == [f"ingest: source '{text}': it is a file but not a zip archive; "
                                               "expected 'demo', an existing folder, a .zip archive, "
                                               "'kaggle:<owner/dataset>', 'isic:<collection>' or 'gs://bucket/prefix'"]
    with zipfile.ZipFile(tmp_path / "real.zip", "w") as archive:
        archive.writestr("a.txt", "x")
    assert problems({"source": str(tmp_path / "real.zip")}) == []


def test_missing_kaggle_credentials_are_named(tmp_path, monkeypatch):
    for name in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path))
    assert problems({"source": "kaggle:andrewmvd/isic-2019"}) == [
        f"ingest: no Kaggle credentials: set KAGGLE_USERNAME and KAGGLE_KEY, or save the token from kaggle.com -> "
        f"Settings -> API -> Create New Token as {tmp_path / 'kaggle.json'} and run "
        f"`chmod 600 {tmp_path / 'kaggle.json'}`"]
    (tmp_path / "kaggle.json").write_text(json.dumps({"username": "u", "key": "k"}))
    (tmp_path / "kaggle.json").chmod(0o600)
    assert problems({"source": "kaggle:andrewmvd/isic-2019"}) == []
    # a cluster run (submit) brings its own credentials: only the form is checked
    (tmp_path / "kaggle.json").unlink()
    assert problems({"source": "kaggle:andrewmvd/isic-2019"}, local=False) == []


def test_missing_cloud_storage_credentials_are_named(tmp_path, monkeypatch):
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing-key.json"))
    found = problems({"source": "gs://bucket/isic2019"})
    assert len(found) == 1 and found[0].startswith("ingest: cannot create a Cloud Storage client (DefaultCreden"), found
    assert "set GOOGLE_APPLICATION_CREDENTIALS to a service-account key file" in found[0]
    assert problems({"source": "gs://bucket/isic2019"}, local=False) == []
    assert problems({"source": "/only/on/the/cluster"}, local=False) == []  # a cluster's own path: not checked here


def test_preflight_imports_neither_tensorflow_nor_kfp_and_is_quick(isic_sample):
    code = ("import sys, time; t = time.perf_counter(); "
            "from dermpipe.pipelines.preflight import problems; "
            f"assert problems({{'source': {str(isic_sample)!r}}}) == []; "
            "print(time.perf_counter() - t); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'kfp', 'keras', 'pandas')))")
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[1] == "[]", out
    assert float(out.splitlines()[0]) < 2.0 and time.perf_counter() - started < 20
