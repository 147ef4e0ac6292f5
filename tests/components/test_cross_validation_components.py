"""train-fold x3 and cross-validate called as plain Python on the real ISIC 2019 sample, then evaluate and explain
take the ensemble unchanged."""

import inspect
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from artifacts import make_artifact, split_parts
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Markdown, Metrics, Model

from dermpipe.components.cross_validate import cross_validate
from dermpipe.components.evaluate import evaluate
from dermpipe.components.explain import explain
from dermpipe.components.train import train
from dermpipe.components.train_fold import train_fold

FOLDS = 3


@pytest.fixture(scope="module")
def cross_validated(merged, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cv")
    raw, parts = merged[0], split_parts(merged, tmp, folds=FOLDS)
    models, predictions = [], []
    for fold in reversed(range(FOLDS)):  # collected in any order: cross-validate sorts by fold
        models.append(make_artifact(Model, tmp, f"model-{fold}"))
        predictions.append(make_artifact(Dataset, tmp, f"oof-{fold}"))
        train_fold.python_func(raw=raw, train_split=parts["train"], val_split=parts["val"], model=models[-1],
                               predictions=predictions[-1], stats=make_artifact(Metrics, tmp, f"stats-{fold}"),
                               iteration=fold, backbone="simple_cnn", image_size=32, epochs=1, patience=1, seed=fold,
                               quiet=True)
    outputs = {"ensemble": make_artifact(Model, tmp, "ensemble"), "metrics": make_artifact(Metrics, tmp, "cv"),
               "confusion": make_artifact(ClassificationMetrics, tmp, "cm"), "report": make_artifact(HTML, tmp, "r"),
               "leaderboard": make_artifact(Markdown, tmp, "board")}
    cross_validate.python_func(models=models, predictions=predictions, train_split=parts["train"],
                               val_split=parts["val"], ensemble_weighting="fold_bma", ensemble_temperature=True,
                               **outputs)
    return raw, parts, models, outputs, tmp


def test_train_fold_takes_trains_parameters_plus_the_fold():
    def values(component):
        parameters = inspect.signature(component.python_func).parameters
        return {name: (p.annotation, p.default) for name, p in parameters.items()
                if p.annotation in (int, float, str, bool)}

    assert values(train_fold) == {"iteration": (int, inspect.Parameter.empty), "sweep": (str, ""), **values(train)}


def test_cross_validation_scores_every_train_val_image_out_of_fold(cross_validated):
    _, parts, models, outputs, _ = cross_validated
    pool = pd.concat([pd.read_parquet(parts["train"].path), pd.read_parquet(parts["val"].path)])
    oof = pd.read_parquet(f"{outputs['ensemble'].path}/oof_predictions.parquet")
    assert sorted(oof["image"]) == sorted(pool["image"])
    assert not set(oof["image"]) & set(pd.read_parquet(parts["test"].path)["image"])
    metrics = outputs["metrics"].metadata
    assert metrics["oof_rows"] == len(pool) and metrics["folds"] == FOLDS
    per_fold = [metrics[f"fold_{f}_balanced_accuracy"] for f in range(FOLDS)]
    assert metrics["cv_balanced_accuracy_mean"] == pytest.approx(np.mean(per_fold))
    matrix = outputs["confusion"].metadata["confusionMatrix"]["rows"]
    assert sum(sum(row["row"]) for row in matrix) == len(pool)
    assert "test split was not used here" in open(outputs["report"].path).read()
    annotations = outputs["ensemble"].metadata
    assert annotations["ensemble"] is True and len(annotations["member_temperatures"]) == FOLDS
    assert annotations["members"] == [m.uri for m in models]


def test_evaluate_and_explain_take_the_ensemble_unchanged(cross_validated):
    from dermpipe.model.evaluation.evaluate import predict_table
    from dermpipe.model.zoo import load_classifier

    raw, parts, models, outputs, tmp = cross_validated
    ensemble = outputs["ensemble"]
    metrics, predictions = make_artifact(Metrics, tmp, "test-metrics"), make_artifact(Dataset, tmp, "test-pred")
    evaluate.python_func(raw=raw, model=ensemble, test_split=parts["test"], metrics=metrics,
                         confusion=make_artifact(ClassificationMetrics, tmp, "test-cm"),
                         report=make_artifact(HTML, tmp, "test-report"), predictions=predictions, tta=False)
    test = pd.read_parquet(parts["test"].path)
    assert metrics.metadata["test_rows"] == len(test)
    served = pd.read_parquet(predictions.path)[[c for c in pd.read_parquet(predictions.path) if c.startswith("p_")]]
    np.testing.assert_allclose(served.to_numpy().sum(axis=1), 1.0, atol=1e-5)
    member = predict_table(load_classifier(f"{models[0].path}/model.keras"), test, Path(raw.path), 32)
    assert not np.allclose(member, served.to_numpy(), atol=1e-4)  # the ensemble, not one member, answered
    gallery = make_artifact(HTML, tmp, "gallery")
    explain.python_func(raw=raw, model=ensemble, predictions=predictions, gallery=gallery,
                        gradcam_pngs=make_artifact(Artifact, tmp, "pngs"), per_class=1)
    assert gallery.metadata["method"] == ["gradcam"] and "member_0/" in gallery.metadata["layer"]
