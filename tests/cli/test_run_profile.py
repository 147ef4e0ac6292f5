"""`dermpipe run`'s parameters: the named profiles, `--config FILE.yaml` (submit's file) and their precedence."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from dermpipe.cli.main import app
from dermpipe.orchestration.errors import SubmitError
from dermpipe.pipelines.parameters import defaults
from dermpipe.pipelines.profiles import PROFILES, resolve_params

LAPTOP = {"epochs": 12, "image_size": 64, "backbone": "simple_cnn", "patience": 4}


@pytest.fixture
def seen(run_local_calls) -> list[dict]:
    """The params each `dermpipe run` hands to the local runner (tests/conftest.py; nothing runs)."""
    return run_local_calls


def test_the_laptop_profile_is_todays_run_defaults_and_cluster_the_dataclass_defaults():
    laptop = resolve_params("laptop")
    assert {k: laptop[k] for k in LAPTOP} == LAPTOP
    assert resolve_params("cluster") == defaults()
    assert defaults()["epochs"] == 10 and defaults()["image_size"] == 224 and defaults()["patience"] == 3
    assert {k: v for k, v in laptop.items() if k not in LAPTOP} == {k: v for k, v in defaults().items()
                                                                   if k not in LAPTOP}


def test_the_laptop_resnet_profile_is_the_recipe_sweeps_best_and_runs(seen):
    resnet = resolve_params("laptop_resnet")
    assert (resnet["backbone"], resnet["image_size"], resnet["lr_schedule"], resnet["class_balance"]) == (
        "small_resnet", 64, "cosine", "sqrt_weights")
    assert resnet["patience"] == resnet["epochs"] == 20  # the cosine schedule runs to its end
    assert CliRunner().invoke(app, ["run", "--profile", "laptop_resnet"]).exit_code == 0
    assert seen[0]["backbone"] == "small_resnet" and seen[0]["class_balance"] == "sqrt_weights"


def test_explicit_beats_config_beats_profile():
    resolved = resolve_params("laptop", {"epochs": 20, "patience": 6}, {"epochs": 30})
    assert (resolved["epochs"], resolved["patience"], resolved["image_size"]) == (30, 6, 64)


def test_config_values_are_typed_and_unknown_or_mistyped_ones_refused():
    assert resolve_params("cluster", {"learning_rate": "1e-4", "shard_size_mb": 20})["learning_rate"] == 1e-4
    with pytest.raises(SubmitError, match=r"f.yaml: unknown pipeline parameter\(s\) epoch; valid names: .*epochs"):
        resolve_params("cluster", {"epoch": 3}, config_origin="f.yaml")
    with pytest.raises(SubmitError, match=r"f.yaml: parameter epochs='many' is not a int"):
        resolve_params("cluster", {"epochs": "many"}, config_origin="f.yaml")
    with pytest.raises(SubmitError, match=r"parameter tta='yes' is not a bool"):
        resolve_params("cluster", {"tta": "yes"})


def test_help_lists_the_profiles_and_shows_the_laptop_values():
    result = CliRunner().invoke(app, ["run", "--help"], env={"COLUMNS": "200", "TERMINAL_WIDTH": "200"})
    assert result.exit_code == 0
    for text in ("--profile", "laptop|cluster|laptop_resnet", "--config", "--train-quiet", "--no-train-quiet",
                 "--split-seed"):
        assert text in result.output, text
    assert "--quiet-train" not in result.output  # the old name still works, hidden
    line = next(row for row in result.output.splitlines() if "--epochs" in row)
    assert "default: (12)" in line


def test_run_defaults_to_the_laptop_profile(seen):
    assert CliRunner().invoke(app, ["run"]).exit_code == 0
    assert {k: seen[0][k] for k in LAPTOP} == LAPTOP
    assert "registry_root" not in seen[0] and "source_fingerprint" not in seen[0]  # the runner fills them in
    assert "feedback_fingerprint" not in seen[0]
    assert seen[0]["train_quiet"] is False and seen[0]["focal_gamma"] == 2.0


def test_profile_cluster_gives_the_pipelines_defaults_and_an_unknown_profile_exits_2(seen):
    assert CliRunner().invoke(app, ["run", "--profile", "cluster"]).exit_code == 0
    assert seen[0] == {k: v for k, v in defaults().items()
                       if k not in ("registry_root", "source_fingerprint", "feedback_fingerprint", "split_file_sha256")}
    assert CliRunner().invoke(app, ["run", "--profile", "gpu"]).exit_code == 2


@pytest.mark.parametrize("text", ["epochs: 20\nbackbone: mobilenet_v3_small\nlearning_rate: 1e-4\n",
                                  "parameters:\n  epochs: 20\n  backbone: mobilenet_v3_small\n"
                                  "  learning_rate: 1e-4\n"])
def test_config_file_flat_or_nested_reaches_the_runner(seen, tmp_path, text):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    result = CliRunner().invoke(app, ["run", "--profile", "cluster", "--config", str(path), "--epochs", "3"])
    assert result.exit_code == 0, result.output
    assert (seen[0]["epochs"], seen[0]["backbone"], seen[0]["learning_rate"]) == (3, "mobilenet_v3_small", 1e-4)
    assert seen[0]["image_size"] == 224


def test_config_file_with_an_unknown_key_exits_2_naming_it(seen, tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("epochs: 3\nquiet_train: true\n")
    result = CliRunner().invoke(app, ["run", "--config", str(path)])
    assert result.exit_code == 2 and not seen
    assert f"--config {path}: unknown pipeline parameter(s) quiet_train" in result.output
    assert "train_quiet" in result.output  # the valid names are listed


def test_param_pairs_sit_between_the_config_and_the_flags(seen, tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("epochs: 3\npatience: 2\nregistry_root: /somewhere\n")
    args = ["run", "--config", str(path), "--param", "epochs=5", "--param", "patience=9", "--patience", "7"]
    assert CliRunner().invoke(app, args).exit_code == 0
    assert (seen[0]["epochs"], seen[0]["patience"], seen[0]["registry_root"]) == (5, 7, "/somewhere")


def test_train_quiet_and_its_old_name(seen):
    for args in (["--train-quiet"], ["--quiet-train"], ["--quiet-train", "--no-train-quiet"]):
        assert CliRunner().invoke(app, ["run", *args]).exit_code == 0
    assert [p["train_quiet"] for p in seen] == [True, True, False]


def test_registry_root_flag_beats_the_config(seen, tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("registry_root: /from-file\n")
    assert CliRunner().invoke(app, ["run", "--config", str(path), "--registry-root", "/flag"]).exit_code == 0
    assert seen[0]["registry_root"] == "/flag"


def test_profiles_only_name_pipeline_parameters():
    for name, values in PROFILES.items():
        assert set(values) <= set(defaults()), name


def test_an_unknown_param_pair_or_a_mistyped_config_value_exits_2(seen, tmp_path):
    result = CliRunner().invoke(app, ["run", "--param", "epoch=3"])
    assert result.exit_code == 2 and "--param: unknown pipeline parameter(s) epoch" in result.output
    path = tmp_path / "params.yaml"
    path.write_text("parameters:\n  tta: maybe\n")
    result = CliRunner().invoke(app, ["run", "--config", str(path)])
    assert result.exit_code == 2 and f"--config {path}: parameter tta='maybe' is not a bool" in result.output
    assert not seen


def test_fresh_deletes_the_checkpoints_of_killed_runs_and_keeps_the_parameters(seen, dermpipe_home):
    """--fresh is run-only: it starts training from epoch 1 without changing a pipeline parameter (the cache key)."""
    killed = dermpipe_home / "checkpoints" / "0123abcd"
    killed.mkdir(parents=True)
    (killed / "state.json").write_text("{}")
    assert CliRunner().invoke(app, ["run"]).exit_code == 0
    assert killed.exists()  # without --fresh a re-run resumes from them
    assert CliRunner().invoke(app, ["run", "--fresh"]).exit_code == 0
    assert not (dermpipe_home / "checkpoints").exists()
    assert seen[0] == seen[1]
