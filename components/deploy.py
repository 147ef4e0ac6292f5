"""deploy (local target): push a blessed model into a versioned registry in TF Serving's layout.

    <registry>/<model name>/<version>/saved_model.pb, variables/, model.keras, dermpipe.json
    <registry>/<model name>/current.json      which version is served

The registry root may be a local folder or gs://bucket/prefix (tf.io.gfile handles both). The SavedModel is
loaded and called once before it is pushed: a model that cannot serve is never pushed.
"""

import json
import tempfile
from pathlib import Path

from kfp.dsl import Input, Metrics, Model, Output

from dermpipe import config
from dermpipe.componentkit import stage_component


def next_version(registry_root: str, model_name: str) -> int:
    """1 + the highest integer version folder under <registry_root>/<model_name> (1 for a new model)."""
    import tensorflow as tf

    model_dir = f"{registry_root.rstrip('/')}/{model_name}"
    if not tf.io.gfile.exists(model_dir):
        return 1
    versions = [int(name.strip("/")) for name in tf.io.gfile.listdir(model_dir) if name.strip("/").isdigit()]
    return max(versions, default=0) + 1


def export_saved_model(keras_file: Path, out_dir: Path) -> dict[str, object]:
    """Export the Keras model as a SavedModel (JPEG-bytes and pixel signatures) and check that it answers."""
    from dermpipe.export import check_serving_model, export_serving_model
    from dermpipe.models import load_classifier

    description = export_serving_model(load_classifier(keras_file), out_dir)
    return {**description, "check": check_serving_model(out_dir, len(config.CLASSES))}


def copy_tree(src: Path, dst: str) -> None:
    import tensorflow as tf

    for path in sorted(src.rglob("*")):
        target = f"{dst}/{path.relative_to(src).as_posix()}"
        if path.is_dir():
            tf.io.gfile.makedirs(target)
        else:
            tf.io.gfile.makedirs(target.rsplit("/", 1)[0])
            tf.io.gfile.copy(str(path), target, overwrite=True)


def push(model_dir: Path, registry_root: str, model_name: str, record: dict[str, object]) -> tuple[int, str]:
    """Export, validate and copy the model into the next registry version, then mark it current."""
    import tensorflow as tf

    version = next_version(registry_root, model_name)
    target = f"{registry_root.rstrip('/')}/{model_name}/{version}"
    with tempfile.TemporaryDirectory() as staging:
        stage = Path(staging) / str(version)
        check = export_saved_model(model_dir / "model.keras", stage)
        tf.io.gfile.copy(str(model_dir / "model.keras"), str(stage / "model.keras"))
        (stage / "dermpipe.json").write_text(json.dumps({**record, "version": version, "serving_check": check},
                                                        indent=1, default=str))
        copy_tree(stage, target)
    with tf.io.gfile.GFile(f"{registry_root.rstrip('/')}/{model_name}/current.json", "w") as handle:
        handle.write(json.dumps({"version": version, "uri": target}))
    return version, target


def run(model: Model, evaluation: Metrics, pushed: Model, registry_root: str, model_name: str) -> None:
    from dermpipe.lineage import annotate

    if not registry_root.strip():
        raise ValueError("deploy: registry_root is empty; set the pipeline parameter registry_root to a folder or "
                         "gs://bucket/prefix where model versions are kept")
    record = {"model_name": model_name, "source_model_uri": model.uri, "training": dict(model.metadata),
              "evaluation_uri": evaluation.uri, "evaluation": dict(evaluation.metadata)}
    version, target = push(Path(model.path), registry_root, model_name, record)
    Path(pushed.path).write_text(json.dumps({"registry_uri": target, "version": version}))
    annotate(pushed, {"registry_uri": target, "version": version, "model_name": model_name, "target": "local",
                      "source_model_uri": model.uri})


@stage_component()
def deploy(model: Input[Model], evaluation: Input[Metrics], pushed: Output[Model], registry_root: str,
           model_name: str = "dermpipe-isic2019"):
    """Push a blessed model to the versioned registry (runs only under the pipeline's blessed condition)."""
    from dermpipe.components.deploy import run

    run(model, evaluation, pushed, registry_root, model_name)
