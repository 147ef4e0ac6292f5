"""The sweep as a pipeline parameter: checked by pre-flight, and writable as YAML in a --config file."""


def test_preflight_refuses_a_bad_sweep_before_anything_starts():
    from dermpipe.pipelines.preflight import problems

    assert problems({"source": "demo", "sweep": "[{backbone: vgg16}]"})[0].startswith(
        "cross_validate: backbone 'vgg16' is not supported")
    assert problems({"source": "demo", "sweep": "[{name: a}, {name: b, loss: focal}]", "ensemble_top": 2}) == []


def test_a_config_file_may_write_the_sweep_as_yaml():
    import yaml

    from dermpipe.model.training.fold_plan import parse_sweep
    from dermpipe.pipelines.profiles import resolve_params

    config = yaml.safe_load("folds: 3\nsweep:\n  - {name: plain}\n  - {name: focal, loss: focal}\n")
    params = resolve_params("laptop", config)
    assert isinstance(params["sweep"], str) and params["folds"] == 3
    assert [c["name"] for c in parse_sweep(params["sweep"])] == ["plain", "focal"]
