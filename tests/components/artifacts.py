"""KFP artifacts as kfp.local hands them to a component, for tests that call a component's python_func."""


def make_artifact(kind, folder, name):
    """An artifact as kfp.local hands one to a component: a local URI (its .path) and empty metadata."""
    return kind(name=name, uri=str(folder / name), metadata={})
