"""The champion's evidence: the frozen benchmark set a deployed version was judged on, and how later gates use it.

Why: a gate that compares champion and challenger only on the challenger's own test split lets whichever data the
latest run used win (a demo model is hopeless on real images and the other way round). So the first deployment of a
version freezes its test split as a benchmark set (dermpipe.data.benchmark, reused when the groups are the same) and
records it in the version's dermpipe.json (`frozen_benchmark`); the resolver pins the champion's set when no
benchmark_set is named, split puts its groups into test, and the gate compares on it as well as on the whole split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dermpipe import config, storage


def freeze_test_split(test_path: Path | str, source: str, registry_root: str, model_name: str = config.MODEL_NAME, *,
                      split_seed: int, dataset_fingerprint: str = "") -> dict[str, str]:
    """Freeze (or reuse) the deployed run's test split as `<source>-test@vN`; the fields for the version's record."""
    from dermpipe.data.benchmark import freeze_or_reuse, set_name

    table = pd.read_parquet(test_path)
    uri, bench, new = freeze_or_reuse(table, set_name(source), registry_root, model_name, split_seed=split_seed,
                                      dataset_fingerprint=dataset_fingerprint)
    print(f"deploy: {'froze' if new else 'reused'} the test split as benchmark set {bench.ref} "
          f"({len(bench.groups)} groups, {bench.rows} images): the next gates compare on it", flush=True)
    return {"frozen_benchmark": bench.ref, "frozen_benchmark_uri": uri}


def freeze_run_test_split(test_split, raw, registry_root: str, model_name: str) -> dict[str, str]:
    """freeze_test_split for a run's split `test` artifact and ingest `dataset` artifact (its source names the set,
    its manifest hash is the set's data set fingerprint; without it the set is named after the test split)."""
    source = str((raw.metadata if raw is not None else {}).get("source") or "")
    fingerprint = str((raw.metadata if raw is not None else {}).get("manifest_sha256") or "")
    seed = (test_split.metadata.get("params") or {}).get("seed", 0)
    return freeze_test_split(test_split.path, source, registry_root, model_name, split_seed=int(seed or 0),
                             dataset_fingerprint=fingerprint)


def champion_set(registry_root: str, model_name: str, version: int) -> tuple[str, str]:
    """(file URI, name@vN) of the frozen set recorded with `version`, ('', '') when it has none (no champion, or a
    version deployed before sets were frozen at deployment)."""
    from dermpipe.deploy.registry import read_record

    if not version:
        return "", ""
    record = read_record(registry_root, model_name, version)
    uri, ref = str(record.get("frozen_benchmark_uri") or ""), str(record.get("frozen_benchmark") or "")
    if uri and not storage.exists(uri):
        raise FileNotFoundError(f"version {version}'s dermpipe.json names its frozen benchmark set {ref} at {uri}, "
                                f"which is gone; restore it (benchmark sets are immutable) or name a "
                                f"benchmark_set explicitly")
    return uri, ref


def own_set_rows(test: pd.DataFrame, train: pd.DataFrame, uri: str) -> tuple[np.ndarray, int, int]:
    """(test rows in the frozen set at `uri`, its groups in the train split, their train rows): the set's groups found
    by any identity they have (group key, lesion, patient, content hash), as split finds a named set's."""
    from dermpipe.data.benchmark import load
    from dermpipe.data.stable_split import in_benchmark

    groups = set(load(uri).groups)

    def member(table: pd.DataFrame) -> np.ndarray:
        keys = table["group_key"].astype(str).to_numpy()
        return in_benchmark(table, keys, pd.factorize(keys)[0], groups)

    trained = member(train) if len(train) and "group_key" in train else np.zeros(len(train), dtype=bool)
    return member(test), int(train.loc[trained, "group_key"].nunique()) if trained.any() else 0, int(trained.sum())
