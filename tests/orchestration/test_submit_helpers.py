"""Pure helpers of submit/schedule: parameters from flags and YAML, cron conversion, state names, the wait loop."""

import datetime as dt
from types import SimpleNamespace

import pytest

from dermpipe.orchestration.backend import RunStatus
from dermpipe.orchestration.cron import kfp_cron, vertex_cron
from dermpipe.orchestration.errors import SubmitError
from dermpipe.orchestration.parameters import load_params, parse_param
from dermpipe.orchestration.submit import run_name
from dermpipe.orchestration.watch import normalise_state, wait_for


@pytest.mark.parametrize("pair, expected", [
    ("epochs=20", ("epochs", 20)), ("learning_rate=1e-4", ("learning_rate", 1e-4)), ("tta=false", ("tta", False)),
    ("source=gs://b/isic=v2", ("source", "gs://b/isic=v2")), ("registry_root=", ("registry_root", "")),
    ("model_name=null", ("model_name", "null")), (" backbone = efficientnet_b3", ("backbone", "efficientnet_b3")),
])
def test_parse_param_types_values_as_yaml(pair, expected):
    assert parse_param(pair) == expected


@pytest.mark.parametrize("pair", ["epochs", "=3", ""])
def test_parse_param_rejects_pairs_without_key(pair):
    with pytest.raises(SubmitError, match="expected key=value"):
        parse_param(pair)


def test_load_params_reads_yaml_then_flags_on_top(tmp_path):
    flat = tmp_path / "flat.yaml"
    flat.write_text("epochs: 5\nsource: demo\n")
    assert load_params(flat, ["epochs=8", "tta=true"]) == {"epochs": 8, "source": "demo", "tta": True}
    nested = tmp_path / "nested.yaml"
    nested.write_text("parameters:\n  image_size: 384\n")
    assert load_params(nested) == {"image_size": 384}
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(SubmitError, match="expected a mapping"):
        load_params(bad)
    with pytest.raises(SubmitError, match="not found"):
        load_params(tmp_path / "missing.yaml")


@pytest.mark.parametrize("cron, kfp, vertex", [
    ("0 6 * * *", "0 0 6 * * *", "0 6 * * *"),
    ("0 0 3 * * 1", "0 0 3 * * 1", "0 3 * * 1"),
    ("  15  2 * * 0 ", "0 15 2 * * 0", "15 2 * * 0"),
])
def test_cron_is_converted_per_backend(cron, kfp, vertex):
    assert kfp_cron(cron) == kfp and vertex_cron(cron) == vertex


def test_cron_errors_say_what_is_expected():
    with pytest.raises(SubmitError, match="expected 5 fields"):
        kfp_cron("daily")
    with pytest.raises(SubmitError, match="time zone"):
        kfp_cron("TZ=Europe/Paris 0 6 * * *")
    assert vertex_cron("TZ=Europe/Paris 0 6 * * *") == "TZ=Europe/Paris 0 6 * * *"
    with pytest.raises(SubmitError, match="to the minute"):
        vertex_cron("30 0 6 * * *")


@pytest.mark.parametrize("state, expected", [
    ("SUCCEEDED", "succeeded"), (SimpleNamespace(name="PIPELINE_STATE_RUNNING"), "running"),
    ("PipelineState.PIPELINE_STATE_FAILED", "failed"), (None, "unknown"), ("RUNTIME_STATE_UNSPECIFIED", "unspecified"),
])
def test_states_are_normalised(state, expected):
    assert normalise_state(state) == expected


def test_run_name_is_sortable_and_timestamped():
    assert run_name("dermpipe-training", dt.datetime(2026, 11, 25, 21, 5, 1)) == "dermpipe-training-20261125-210501"


def test_wait_for_prints_changes_only_and_times_out_with_advice():
    states = iter([RunStatus("r1", "n", "running", tasks={"ingest": "running"}),
                   RunStatus("r1", "n", "running", tasks={"ingest": "running"}),
                   RunStatus("r1", "n", "succeeded", tasks={"ingest": "succeeded"})])
    printed: list[str] = []
    final = wait_for(lambda: next(states), printed.append, interval=0, sleep=lambda s: None)
    assert final.state == "succeeded"
    assert [" ".join(p.split()[1:]) for p in printed] == ["run running", "ingest running", "run succeeded",
                                                          "ingest succeeded"]
    with pytest.raises(SubmitError, match="dermpipe status r2"):
        wait_for(lambda: RunStatus("r2", "n", "running"), printed.append, interval=0, timeout=-1,
                 sleep=lambda s: None)


def test_check_params_converts_to_the_declared_types_and_refuses_bad_values(training_package):
    from dermpipe.orchestration.parameters import check_params

    typed = check_params({"epochs": 20.0, "learning_rate": 1, "source": 2019, "tta": False}, training_package)
    assert typed == {"epochs": 20, "learning_rate": 1.0, "source": "2019", "tta": False}
    assert isinstance(typed["epochs"], int) and isinstance(typed["learning_rate"], float)
    for bad in ({"epochs": 2.5}, {"tta": "maybe"}, {"learning_rate": "fast"}):
        with pytest.raises(SubmitError, match="the pipeline expects"):
            check_params(bad, training_package)
    with pytest.raises(SubmitError, match="unknown pipeline parameter"):
        check_params({"epoch": 1}, training_package)
