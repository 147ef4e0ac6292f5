"""One parameter type checker (#30 point 5) for `dermpipe run` (typed against the stage dataclasses) and
`submit`/`schedule create` (typed against the compiled package): the same rule and the same message either way."""

import pytest

from dermpipe.orchestration.errors import SubmitError
from dermpipe.orchestration.parameters import KFP_TYPES, typed
from dermpipe.pipelines.parameters import specs
from dermpipe.pipelines.profiles import typed_value


@pytest.mark.parametrize("kind, given, expected", [
    (int, 20, 20), (int, 20.0, 20), (int, "20", 20),
    (float, 1, 1.0), (float, "1e-4", 1e-4), (float, 0.5, 0.5),
    (bool, False, False), (bool, True, True),
    (str, "gs://b/isic", "gs://b/isic"), (str, 2019, "2019"), (str, [{"lr": 0.1}], '[{"lr": 0.1}]'),
    (str, {"epochs": 1}, '{"epochs": 1}'), (None, [1, 2], [1, 2]),
])
def test_values_convert_to_the_declared_type(kind, given, expected):
    got = typed("p", given, kind)
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize("kind, given, expects", [
    (int, 2.5, "a whole number"), (int, "many", "a whole number"), (int, True, "a whole number"),
    (float, "fast", "a number"), (float, False, "a number"), (bool, "yes", "true or false"),
    (bool, 1, "true or false"), (str, True, "text"),
])
def test_values_that_do_not_fit_are_refused_naming_where_and_what_fits(kind, given, expects):
    with pytest.raises(SubmitError) as refused:
        typed("p", given, kind, "f.yaml", hint="default 1")
    assert str(refused.value) == (f"f.yaml: parameter p={given!r} is not a {kind.__name__}: the pipeline expects "
                                  f"{expects} (default 1)")


def test_run_and_submit_use_the_same_rule():
    epochs = specs()["epochs"]
    assert typed_value(epochs, "20", "--config f.yaml") == typed("epochs", "20", KFP_TYPES["NUMBER_INTEGER"]) == 20
    with pytest.raises(SubmitError, match=r"^--config f.yaml: parameter epochs=2.5 is not a int: the pipeline "
                                          r"expects a whole number \(default 10; training epochs"):
        typed_value(epochs, 2.5, "--config f.yaml")
