"""Laptop-recipe sweep on the HAM10000 kit: train_model called directly, one configuration after another, scored on
DermaMNIST val as benchmarks/ham10000.py scores it (MedMNIST's ACC and AUC over 7 classes, BMA over ISIC 2019's 8).

The same split as benchmarks/ham10000.py's dermamnist arm: DermaMNIST val (998 images) is scored and never seen in
training; early stopping watches a monitor set carved from DermaMNIST train by lesion (GroupShuffleSplit on
lesion_id, 10 %), the rule split_method=file applies. No pipeline around it (no ingest, prepare, profile, evaluate,
gate), so a configuration costs its training time only: for iterating on the recipe; the figures to publish come from
benchmarks/ham10000.py. Each configuration is one line of JSON in --out (parameters, figures, with and without
evaluate's flip test-time augmentation, epochs run, seconds).

    python benchmarks/recipe_sweep.py [--kit ../shared/data/ham10000] [--out FILE.jsonl]
                                      --config backbone=small_resnet,epochs=20 [--config ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import time
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
KIT = HERE.parents[1] / "shared" / "data" / "ham10000"
IMAGES = Path("ISIC_2019_Training_Input") / "ISIC_2019_Training_Input"


def _ham10000():
    spec = importlib.util.spec_from_file_location("ham10000_benchmark", HERE / "ham10000.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def kit_tables(kit: Path, monitor_fraction: float = 0.1, seed: int = 42) -> tuple[pd.DataFrame, ...]:
    """(train, monitor, scored): DermaMNIST train less a lesion-grouped monitor set, and DermaMNIST val."""
    from sklearn.model_selection import GroupShuffleSplit

    from dermpipe import config

    truth = pd.read_csv(kit / "ISIC_2019_Training_GroundTruth.csv")
    truth["label"] = truth[list(config.CLASSES)].to_numpy().argmax(axis=1)
    meta = pd.read_csv(kit / "ISIC_2019_Training_Metadata.csv")[["image", "lesion_id"]]
    split = pd.read_csv(kit / "dermamnist_split.csv")[["image", "split"]]
    table = truth[["image", "label"]].merge(meta, on="image", validate="1:1").merge(split, on="image", validate="1:1")
    if len(table) != len(split):
        raise ValueError(f"{kit}: {len(split) - len(table)} images of dermamnist_split.csv have no ground truth row")
    table = table.rename(columns={"label": "label_index"})
    table["label"] = [config.CLASSES[i] for i in table["label_index"]]
    table["path"] = [str(IMAGES / f"{name}.jpg") for name in table["image"]]
    train = table[table["split"] == "train"].reset_index(drop=True)
    keep, monitor = next(GroupShuffleSplit(1, test_size=monitor_fraction, random_state=seed)
                         .split(train, groups=train["lesion_id"].fillna(train["image"])))
    return train.iloc[keep], train.iloc[monitor], table[table["split"] == "val"].reset_index(drop=True)


def score(model, scored: pd.DataFrame, kit: Path, image_size: int) -> dict[str, dict[str, float]]:
    """DermaMNIST val figures, plain and with evaluate's test-time augmentation (the mean over the image and its two
    flips: dermpipe.model.evaluation.evaluate.predict_table, what the pipeline's evaluate reports as TTA)."""
    from dermpipe import config
    from dermpipe.model.evaluation.evaluate import predict_table

    bench = _ham10000()
    out = {}
    for name, tta in (("plain", False), ("tta", True)):
        predictions = pd.DataFrame(predict_table(model, scored, kit, image_size, 64, tta=tta),
                                   columns=[f"p_{c}" for c in config.CLASSES])
        predictions["label"] = scored["label"].to_numpy()
        out[name] = {k: round(v, 4) for k, v in bench.figures(predictions, config.CLASSES).items()}
    return out


def parse_config(text: str) -> dict[str, object]:
    """'key=value,key=value' typed against TrainParams' fields (an unknown key names the valid ones)."""
    from dermpipe.model.training.train import TrainParams

    fields = {f.name: f for f in dataclasses.fields(TrainParams)}
    config = {}
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        if key not in fields:
            raise SystemExit(f"--config {text!r}: unknown train parameter {key!r}; valid: {', '.join(fields)}")
        kind = type(fields[key].default)
        config[key] = value.lower() in ("1", "true", "yes") if kind is bool else kind(value)
    return config


def run_config(overrides: dict[str, object], kit: Path, tables) -> dict[str, object]:
    from dermpipe.model.training.loop import train_model
    from dermpipe.model.training.train import TrainParams

    base = {"backbone": "simple_cnn", "image_size": 64, "epochs": 12, "patience": 4, "quiet": True}
    params = TrainParams(**{**base, **overrides})
    train, monitor, scored = tables
    started = time.perf_counter()
    model, report = train_model(train, monitor, kit, params, quiet=True)
    seconds = time.perf_counter() - started
    return {"config": overrides, "params": dataclasses.asdict(params), "epochs_run": report["epochs_run"],
            "train_seconds": round(seconds, 1), "monitor": report["validation"],
            "dermamnist_val": score(model, scored, kit, params.image_size)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kit", type=Path, default=KIT)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "recipe_sweep.jsonl")
    parser.add_argument("--config", action="append", required=True, help="key=value,... of TrainParams")
    args = parser.parse_args(argv)
    tables = kit_tables(args.kit)
    print(f"train {len(tables[0])}, monitor {len(tables[1])} (lesion-grouped), DermaMNIST val {len(tables[2])}",
          flush=True)
    for text in args.config:
        result = run_config(parse_config(text), args.kit, tables)
        with args.out.open("a") as out:
            out.write(json.dumps(result) + "\n")
        print(json.dumps({k: result[k] for k in ("config", "epochs_run", "train_seconds", "dermamnist_val")}),
              flush=True)


if __name__ == "__main__":
    main()
