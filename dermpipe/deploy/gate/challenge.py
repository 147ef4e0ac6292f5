"""The gate's evidence: the predictions its rules compare, and the rows it compares them on.

The rules are dermpipe.deploy.gate.decision's (bootstrap intervals on the test images); the gate stage
(dermpipe.deploy.gate.stage) gathers the predictions they compare with these functions: the challenger's
(evaluate's `predictions`), the champion's (the registry version the resolver task named, by version and digest:
parameters, so a changed champion re-runs the task and an unchanged one does not), and the baseline's (a logistic
regression on the profile's image statistics, fitted on the train split). When the champion is this very model (same
digest, as on a re-run after deploying it), its predictions are the challenger's and no second inference runs.
With a frozen benchmark set (params.benchmark, name@vN: the one a person named, which split marks `in_benchmark`, else
the champion's own, frozen when it was deployed, whose groups are found here) the champion is compared on the test
rows of that set as well as on the whole test split: the challenger must be non-inferior on both, so that neither
the champion's evidence nor the challenger's own decides alone. A challenger whose data shares no image with the
champion's set is not blessed, with a decision that says so and how to deploy anyway (`dermpipe models push RUN
--override-gate REASON`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from dermpipe.deploy.gate.decision import ChampionSet, fit_image_stats_baseline


class ChampionRef(Protocol):
    """The champion the resolver named, as the gate stage's GateParams carries it (this module does not import the
    stage)."""

    @property
    def registry_root(self) -> str: ...

    @property
    def model_name(self) -> str: ...

    @property
    def champion_version(self) -> int: ...

    @property
    def champion_digest(self) -> str: ...

    @property
    def benchmark(self) -> str: ...


def load_champion(registry_root: str, model_name: str, version: int, digest: str = ""):
    """The Keras model of registry `version` (the champion the resolver named), or None when version is 0. Its
    model.keras must still have the digest the resolver read: a version is immutable once committed."""
    from dermpipe import storage
    from dermpipe.deploy import registry
    from dermpipe.model.zoo import load_classifier

    if not version or not registry_root.strip():
        return None
    source = f"{registry.version_dir(registry_root, model_name, version)}/model.keras"
    with tempfile.TemporaryDirectory() as tmp:
        local = storage.download(source, Path(tmp) / "champion.keras")
        found = storage.sha256_file(local)
        if digest and found != digest:
            raise RuntimeError(f"evaluate: {source} has digest {found[:12]}, but the champion resolved at the start "
                               f"of this run had {digest[:12]}; a committed version must never change. Check who "
                               f"wrote into {registry.version_dir(registry_root, model_name, version)}")
        return load_classifier(local)


def baseline_predictions(profile_dir: Path | None, train: pd.DataFrame, test: pd.DataFrame) -> tuple[
        np.ndarray | None, str]:
    """(predicted test labels or None, what was done): the gate's simple baseline, a logistic regression on the
    image statistics the profile stage computed for each train and test image."""
    from dermpipe.data.image_stats import STAT_COLUMNS
    from dermpipe.model.profile.features import image_key
    from dermpipe.model.profile.reference import PROFILE_FILE

    if profile_dir is None or not (profile_dir / PROFILE_FILE).is_file():
        return None, "baseline not fitted: no profile artifact with image statistics was given"
    profile = pd.read_parquet(profile_dir / PROFILE_FILE).drop_duplicates("image").set_index("image")
    keys = {name: [image_key(i) for i in t["image"]] for name, t in (("train", train), ("test", test))}
    missing = {name: sorted(set(k) - set(profile.index)) for name, k in keys.items()}
    if any(missing.values()):
        return None, "baseline not fitted: images missing from the profile: " + "; ".join(
            f"{name} {len(m)} (e.g. {', '.join(m[:3])})" for name, m in missing.items() if m)
    columns = list(STAT_COLUMNS)
    predicted = fit_image_stats_baseline(profile.loc[keys["train"], columns].to_numpy(float),
                                         train["label_index"].to_numpy(),
                                         profile.loc[keys["test"], columns].to_numpy(float))
    return predicted, f"baseline: logistic regression on {len(columns)} image statistics, {len(train)} train images"


def default_operating_point(profile_dir: Path | None):
    """The profile's default melanoma operating point (clinical.json), or None when there is none."""
    from dermpipe.model.profile.clinical import load_clinical

    clinical = None if profile_dir is None else load_clinical(str(profile_dir))
    return None if clinical is None else clinical.default_point


def champion_predictions(model_dir: Path, raw: Path, test_table: pd.DataFrame, challenger_pred: np.ndarray,
                         params: ChampionRef) -> np.ndarray | None:
    """The champion's predicted labels on the test split (None without a champion)."""
    from dermpipe import storage
    from dermpipe.model.evaluation.evaluate import predict_table
    from dermpipe.model.metadata_inputs import image_size as model_image_size

    if not params.champion_version or not params.registry_root.strip():
        return None
    if params.champion_digest and storage.sha256_file(model_dir / "model.keras") == params.champion_digest:
        return challenger_pred.copy()  # the champion is this model: same predictions, no second inference
    champion = load_champion(params.registry_root, params.model_name, params.champion_version,
                             params.champion_digest)
    return predict_table(champion, test_table, raw, model_image_size(champion)).argmax(axis=1)


def champion_set(test_table: pd.DataFrame, train_table: pd.DataFrame, params: ChampionRef,
                 ) -> tuple[ChampionSet | None, list[str]]:
    """(the frozen set's rows to compare on as well, or None without a set; what was done). A named set was marked
    by split (`in_benchmark`); the champion's own set is found here, leaving out groups the challenger trained on.
    The own set absent from the data is a refusal in the decision (data from elsewhere); a named set absent, an
    error."""
    from dermpipe.deploy.evidence import own_set_rows

    n = len(test_table)
    if not params.benchmark:
        return None, [f"compared on the whole test split ({n} images; no frozen benchmark set pinned)"]
    record = _champion_record(params)
    own = record.get("frozen_benchmark") == params.benchmark
    whose = f"version {params.champion_version}'s frozen benchmark set" if own else "the frozen benchmark set"
    marked = "in_benchmark" in test_table and bool(test_table["in_benchmark"].any())
    notes: list[str] = []
    if own and not marked:
        mask, groups, rows = own_set_rows(test_table, train_table, str(record["frozen_benchmark_uri"]))
        if groups:
            notes.append(f"NOTE: {groups} groups ({rows} images) of {whose} {params.benchmark} are in this run's train "
                         f"split (another split seed or method than the set was frozen with): the challenger trained "
                         f"on them, so they are left out; name the set with --benchmark-set to keep all of it in test")
    elif "in_benchmark" in test_table:
        mask = test_table["in_benchmark"].to_numpy(dtype=bool)
    else:
        raise ValueError(f"gate: benchmark {params.benchmark} was pinned, but the test split has no in_benchmark "
                         f"column; re-run the split stage with this version of dermpipe")
    notes.insert(0, f"compared on the whole test split ({n} images) and on {whose} {params.benchmark} "
                    f"({int(mask.sum())} of them)")
    if mask.any():
        return ChampionSet(params.benchmark, mask), notes
    if not own:
        raise ValueError(f"gate: none of the frozen benchmark set {params.benchmark}'s groups is in this data set; the "
                         f"gate cannot compare on it. Name another benchmark_set (or none), or freeze a new one")
    refusal = (f"the challenger's data shares no image/lesion with {whose} {params.benchmark}"
               f"{_classes_in_common(test_table, record)}: the two cannot be "
               f"compared on the champion's evidence; not promoted; `dermpipe models push RUN "
               f"--override-gate REASON` to deploy anyway")
    return ChampionSet(params.benchmark, mask, refusal), notes


def _classes_in_common(test_table: pd.DataFrame, record: dict) -> str:
    """The set's classes against the test split's, in words (from the set's file; '' when it cannot be read)."""
    from dermpipe import config
    from dermpipe.data.benchmark import load

    try:
        counts = load(str(record.get("frozen_benchmark_uri") or "")).class_counts
    except (FileNotFoundError, ValueError):
        return ""
    theirs = {c for c, k in counts.items() if k}
    ours = {config.CLASSES[int(i)] for i in set(test_table["label_index"])}
    common = sorted(theirs & ours, key=config.CLASSES.index)
    return (f" (its classes {', '.join(sorted(theirs, key=config.CLASSES.index))}; this test split's "
            f"{', '.join(sorted(ours, key=config.CLASSES.index))}: "
            + (f"{', '.join(common)} in common)" if common else "no class in common)"))


def _champion_record(params: ChampionRef) -> dict:
    from dermpipe.deploy.registry import read_record

    if not params.champion_version or not params.registry_root.strip():
        return {}
    return read_record(params.registry_root, params.model_name, params.champion_version)


def champion_benchmark_note(params: ChampionRef) -> str | None:
    """A warning when the champion was gated on another benchmark set than this comparison uses (and it is not the
    champion's own frozen set), else None."""
    if not params.champion_version or not params.registry_root.strip():
        return None
    record = _champion_record(params)
    theirs = str(record.get("benchmark", ""))
    if theirs == params.benchmark or record.get("frozen_benchmark") == params.benchmark:
        return None
    whole = "the whole test split (no benchmark set)"
    return (f"NOTE: champion version {params.champion_version} was gated on {theirs or whole}, this gate on "
            f"{params.benchmark or whole}; both models are scored on the same images here. If the champion trained "
            f"on some of them, its score is optimistic, which makes the gate stricter for the challenger, never laxer")
