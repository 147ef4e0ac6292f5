"""One kfp.local demo run (and its fully cached twin) per test session, shared by the pipeline, lineage and UI tests."""

import pytest

from dermpipe.pipelines.local import run_local

# The smallest demo run whose model the statistical gate can tell from chance (160 images or 3 epochs cannot).
TINY = {"source": "demo", "demo_images": 240, "image_size": 32, "epochs": 10, "batch_size": 16,
        "backbone": "simple_cnn", "explain_per_class": 1}


@pytest.fixture(scope="session")
def tiny() -> dict:
    """Pipeline parameters of a small, quick demo run (copy before changing)."""
    return dict(TINY)


@pytest.fixture(scope="session")
def home(tmp_path_factory):
    """$DERMPIPE_HOME of the shared runs (set for the session once a test asks for it)."""
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DERMPIPE_HOME", str(home))
        yield home


@pytest.fixture(scope="session")
def first_run(home):
    """The first demo run in `home`: every task executes, the model is blessed and deployed as version 1."""
    return run_local({**TINY, "min_balanced_accuracy": 0.0})


@pytest.fixture(scope="session")
def cached_run(first_run):
    """The same run again: every task, deploy included, is served from kfp.local's cache."""
    return run_local({**TINY, "min_balanced_accuracy": 0.0})
