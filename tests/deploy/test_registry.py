import json

import pytest
from typer.testing import CliRunner

from dermpipe.cli.main import app
from dermpipe.deploy import registry


def _version(root, name, version, bma=None):
    folder = root / name / str(version)
    folder.mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"pb")
    if bma is not None:
        (folder / "dermpipe.json").write_text(json.dumps({"version": version, "evaluation": {
            "balanced_accuracy": bma, "accuracy": bma + 0.1, "blessed": 1}, "source_model_uri": f"/runs/{version}"}))


@pytest.fixture()
def reg(tmp_path):
    for version, bma in ((1, 0.61), (2, 0.70), (3, 0.66)):
        _version(tmp_path, "m", version, bma)
    (tmp_path / "m" / "4").mkdir()  # no saved_model.pb: not a version
    registry.set_current(str(tmp_path), "m", 3)
    return tmp_path


def test_versions_current_and_headline_metrics(reg):
    assert registry.versions(str(reg), "m") == [1, 2, 3]
    rows = registry.list_versions(str(reg), "m")
    assert [(r.version, r.current) for r in rows] == [(1, False), (2, False), (3, True)]
    assert rows[1].metrics == {"balanced_accuracy": 0.70, "accuracy": pytest.approx(0.80)}
    assert registry.model_names(str(reg)) == ["m"]
    pointer = json.loads((reg / "m" / "current.json").read_text())
    assert pointer["version"] == 3 and pointer["uri"] == f"{reg}/m/3"
    assert not (reg / "m" / "current.json.tmp").exists()


def test_promote_and_rollback_move_the_pointer(reg):
    assert registry.set_current(str(reg), "m", 1)["previous"] == 3
    assert registry.current_version(str(reg), "m") == 1
    registry.set_current(str(reg), "m", 3)
    assert registry.rollback(str(reg), "m")["version"] == 2
    assert registry.rollback(str(reg), "m")["version"] == 1
    with pytest.raises(registry.RegistryError, match="oldest"):
        registry.rollback(str(reg), "m")
    with pytest.raises(registry.RegistryError, match=r"no version 4 .*versions present: \[1, 2, 3\]"):
        registry.set_current(str(reg), "m", 4)


def test_unreadable_pointer_names_the_file(reg):
    (reg / "m" / "current.json").write_text("{not json")
    with pytest.raises(registry.RegistryError, match="current.json: not a registry pointer"):
        registry.current_version(str(reg), "m")


def test_models_cli_list_promote_rollback(reg):
    runner = CliRunner()
    listed = runner.invoke(app, ["models", "list", "--model-name", "m", "--registry-root", str(reg)])
    assert listed.exit_code == 0, listed.output
    lines = listed.output.strip().splitlines()
    assert "BALANCED_ACCURACY" in lines[0] and "ACCURACY" in lines[0]
    assert lines[3].startswith("*") and "0.6600" in lines[3] and lines[3].rstrip().endswith("/m/3")
    assert not lines[2].startswith("*") and "0.7000" in lines[2]
    promoted = runner.invoke(app, ["models", "promote", "1", "--model-name", "m", "--registry-root", str(reg)])
    assert promoted.exit_code == 0 and "current version 1 (was 3)" in promoted.output
    missing = runner.invoke(app, ["models", "promote", "9", "--model-name", "m", "--registry-root", str(reg)])
    assert missing.exit_code == 2 and "no version 9" in missing.output
    registry.set_current(str(reg), "m", 2)
    back = runner.invoke(app, ["models", "rollback", "--model-name", "m", "--registry-root", str(reg)])
    assert back.exit_code == 0 and "rolled back to version 1 (was 2)" in back.output
    empty = runner.invoke(app, ["models", "list", "--model-name", "other", "--registry-root", str(reg)])
    assert empty.exit_code == 1 and "models there: m" in empty.output


def test_models_cli_default_registry_is_under_dermpipe_home(dermpipe_home):
    _version(dermpipe_home / "registry", "dermpipe-isic2019", 1, 0.5)
    result = CliRunner().invoke(app, ["models", "promote", "1"])
    assert result.exit_code == 0, result.output
    assert (dermpipe_home / "registry" / "dermpipe-isic2019" / "current.json").exists()


def test_the_registry_works_on_gcs(emulator):
    """gs:// goes through google-cloud-storage (the emulator here), with the same results as a local folder."""
    from dermpipe.data.sources.gcs import make_client

    bucket = make_client().create_bucket("registry-test")
    root = f"gs://{bucket.name}/reg"
    for version in (1, 2):
        bucket.blob(f"reg/m/{version}/saved_model.pb").upload_from_string(b"pb")
    registry.set_current(root, "m", 2)
    assert registry.versions(root, "m") == [1, 2] and registry.current_version(root, "m") == 2
    assert registry.rollback(root, "m")["uri"] == f"{root}/m/1"
    assert [r.current for r in registry.list_versions(root, "m")] == [True, False]
    assert registry.model_names(root) == ["m"]


def test_headline_shows_the_operating_point_and_ood_threshold():
    from dermpipe.deploy.registry import headline

    record = {"evaluation": {"balanced_accuracy": 0.7}, "clinical": {
        "operating_points": [{"name": "melanoma_sens95", "threshold": 0.12}, {"name": "melanoma_sens90",
                                                                             "threshold": 0.3}],
        "ood_threshold": 4.5}}
    assert headline(record) == {"balanced_accuracy": 0.7, "melanoma_threshold": 0.12, "ood_threshold": 4.5}
    assert headline({"evaluation": {"balanced_accuracy": 0.7}}) == {"balanced_accuracy": 0.7}
