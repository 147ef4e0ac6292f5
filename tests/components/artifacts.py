"""KFP artifacts as kfp.local hands them to a component, for tests that call a component's python_func."""


def make_artifact(kind, folder, name):
    """An artifact as kfp.local hands one to a component: a local URI (its .path) and empty metadata."""
    return kind(name=name, uri=str(folder / name), metadata={})


def split_parts(merged, folder, folds: int = 0) -> dict:
    """The split component run on `merged` (the conftest fixture) into train/val/test Dataset artifacts."""
    from kfp.dsl import Dataset, Markdown, Metrics

    from dermpipe.components.split import split

    parts = {name: make_artifact(Dataset, folder, name) for name in ("train", "val", "test")}
    split.python_func(merged=merged[2], stats=make_artifact(Metrics, folder, "split-stats"),
                      report=make_artifact(Markdown, folder, "split-report"), test_size=0.1, val_size=0.1, seed=42,
                      folds=folds, **parts)
    return parts
