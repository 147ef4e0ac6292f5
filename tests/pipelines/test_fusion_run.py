"""The whole training DAG through kfp.local with metadata_fusion=True: every stage takes the fusion model, the
deployed SavedModel takes the metadata."""

import json
from pathlib import Path

import pytest

from dermpipe.pipelines.local import run_local

pytestmark = pytest.mark.slow  # one whole kfp.local run on tiny demo data


def test_demo_run_with_metadata_fusion_trains_explains_and_deploys(dermpipe_home, tiny):
    record = run_local({**tiny, "metadata_fusion": True, "min_balanced_accuracy": 0.0, "tta": False})
    assert record.status == "succeeded", record.error
    assert all(t.status == "success" for t in record.tasks.values()) and "deploy" in record.tasks
    model = record.artifact("train", "model")
    assert model["metadata"]["metadata_fusion"] is True
    coverage = model["metadata"]["metadata_coverage"]
    assert coverage["train"]["rows"] > 0 and coverage["train"]["site_missing"] > 0  # the demo leaves 10 % out
    stats = record.artifact("train", "stats")["metadata"]
    assert stats["metadata_train_site_missing"] == coverage["train"]["site_missing"]
    training = json.loads((Path(model["uri"]) / "training.json").read_text())
    assert training["input"] == "tfrecord-shards" and training["params"]["metadata_fusion"] is True
    assert record.artifact("explain", "gallery")["metadata"]["metadata_held_fixed"] is True
    deployed = Path(record.artifact("deploy", "pushed")["metadata"]["registry_uri"])
    assert (deployed / "embedding_pca.npz").exists()

    import tensorflow as tf

    from dermpipe.model.export import check_serving_model

    assert check_serving_model(deployed, 8)["metadata"] is True
    inputs = tf.saved_model.load(str(deployed)).signatures["serving_default"].structured_input_signature[1]
    assert set(inputs) == {"image_bytes", "age_approx", "sex", "anatom_site_general"}
