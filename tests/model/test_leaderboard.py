"""Sweep configurations are checked before training; the leaderboard ranks by CV (or validation) BMA."""

import pytest

from dermpipe.model.evaluation.leaderboard import (
    leaderboard,
    leaderboard_markdown,
    leaderboard_metrics,
    top,
)
from dermpipe.model.training.fold_plan import parse_sweep


def test_parse_sweep_names_and_checks_every_configuration():
    configs = parse_sweep("""
- {backbone: simple_cnn, image_size: 64, learning_rate: 0.001}
- {name: focal, backbone: simple_cnn, loss: focal, class_balance: oversample}
""")
    assert configs == [
        {"name": "backbone=simple_cnn,image_size=64,learning_rate=0.001", "backbone": "simple_cnn",
         "image_size": 64, "learning_rate": 0.001},
        {"name": "focal", "backbone": "simple_cnn", "loss": "focal", "class_balance": "oversample"}]
    assert parse_sweep('[{"metadata_fusion": true}]')[0]["metadata_fusion"] is True
    assert parse_sweep("") == []


@pytest.mark.parametrize(("text", "message"), [
    ("- {backbone: vgg16}", "backbone 'vgg16' is not supported"),
    ("- {dropout_rate: 0.3}", r"unknown train parameter\(s\) \['dropout_rate'\]"),
    ("- {name: a}\n- {name: a, loss: focal}", "name 'a' is used twice"),
    ("{backbone: simple_cnn}", "expected a list of mappings"),
    ("- {learning_rate: 0}", "learning_rate=0: expected a positive learning rate"),
])
def test_bad_configurations_are_refused_by_name(text, message):
    with pytest.raises(ValueError, match=message):
        parse_sweep(text)


def test_leaderboard_ranks_by_oof_bma_and_publishes_it():
    results = [
        {"name": "a", "config": {"backbone": "simple_cnn"}, "oof_balanced_accuracy": 0.41,
         "val_balanced_accuracy": 0.60},
        {"name": "b", "config": {"loss": "focal"}, "oof_balanced_accuracy": 0.55, "val_balanced_accuracy": 0.40},
        {"name": "c", "config": {}, "oof_balanced_accuracy": 0.48, "val_balanced_accuracy": 0.50},
    ]
    table = leaderboard(results)
    assert table["name"].tolist() == ["b", "c", "a"] and table["rank"].tolist() == [1, 2, 3]
    assert top(table, 2) == ["b", "c"]
    markdown = leaderboard_markdown(table)
    assert "Ranked by oof_balanced_accuracy" in markdown and "| 1 | b | 0.5500 | 0.4000 |" in markdown
    metrics = leaderboard_metrics(table)
    assert metrics["best_oof_balanced_accuracy"] == 0.55 and metrics["rank_3_oof_balanced_accuracy"] == 0.41
    by_val = leaderboard([{k: v for k, v in r.items() if k != "oof_balanced_accuracy"} for r in results])
    assert by_val["name"].tolist() == ["a", "c", "b"]  # without folds: the validation BMA decides
    with pytest.raises(ValueError, match="no configuration results"):
        leaderboard([])
    with pytest.raises(ValueError, match="n=0"):
        top(table, 0)
