"""gate: bless the challenger for deployment, or not, against chance, the resolved champion and a baseline.

The statistics are dermpipe.model.evaluation.gate's (bootstrap intervals on the test images). This stage gathers
the predictions they
compare: the challenger's (evaluate's `predictions`), the champion's (the registry version the resolver task
named, by version and digest: parameters, so a changed champion re-runs this task and an unchanged one does not),
and the baseline's (a logistic regression on the profile's image statistics, fitted on the train split). When the
champion is this very model (same digest, as on a re-run after deploying it), its predictions are the challenger's
and no second inference runs.
With a frozen benchmark set (params.benchmark, name@vN) every comparison runs on the test rows of that set only
(`in_benchmark`, marked by split), so releases are compared on the same images; the decision names the set.
"""

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from kfp.dsl import Dataset, Markdown, Metrics, Model

from dermpipe.deploy.params import ChallengeParams


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
    from dermpipe.model.evaluation.gate import fit_image_stats_baseline
    from dermpipe.monitoring.features import image_key
    from dermpipe.monitoring.reference import PROFILE_FILE

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
    from dermpipe.monitoring.clinical import load_clinical

    clinical = None if profile_dir is None else load_clinical(str(profile_dir))
    return None if clinical is None else clinical.default_point


def champion_predictions(model_dir: Path, raw: Path, test_table: pd.DataFrame, challenger_pred: np.ndarray,
                         params: ChallengeParams) -> np.ndarray | None:
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


def benchmark_mask(test_table: pd.DataFrame, benchmark: str) -> tuple[np.ndarray, str]:
    """(rows to compare on, what was done): the benchmark set's rows, or every test row when no set is named."""
    if not benchmark:
        return np.ones(len(test_table), dtype=bool), (f"compared on the whole test split ({len(test_table)} images; "
                                                      f"no frozen benchmark set named)")
    if "in_benchmark" not in test_table:
        raise ValueError(f"gate: benchmark {benchmark} was named, but the test split has no in_benchmark column; "
                         f"re-run the split stage with this version of dermpipe")
    mask = test_table["in_benchmark"].to_numpy(dtype=bool)
    if not mask.any():
        raise ValueError(f"gate: none of the frozen benchmark set {benchmark}'s groups is in this data set; the "
                         f"gate cannot compare on it. Name another benchmark_set (or none), or freeze a new one")
    return mask, (f"compared on frozen benchmark set {benchmark}: {int(mask.sum())} of the {len(test_table)} test "
                  f"images")


def champion_benchmark_note(params: ChallengeParams) -> str | None:
    """A warning when the champion was gated on another benchmark set than this comparison uses, else None."""
    from dermpipe.deploy.registry import read_record

    if not params.champion_version or not params.registry_root.strip():
        return None
    theirs = str(read_record(params.registry_root, params.model_name, params.champion_version).get("benchmark", ""))
    if theirs == params.benchmark:
        return None
    whole = "the whole test split (no benchmark set)"
    return (f"NOTE: champion version {params.champion_version} was gated on {theirs or whole}, this gate on "
            f"{params.benchmark or whole}; both models are scored on the same images here. If the champion trained "
            f"on some of them, its score is optimistic, which makes the gate stricter for the challenger, never laxer")


def run(raw: Dataset, model: Model, test: Dataset, train: Dataset, predictions: Dataset, profile_dir: Path | None,
        decision_md: Markdown, gate_metrics: Metrics, params: ChallengeParams) -> bool:
    from dermpipe.lineage.artifacts import annotate, log_metrics
    from dermpipe.model.evaluation.gate import decide

    test_table = pd.read_parquet(test.path)
    predicted = pd.read_parquet(predictions.path)
    if list(predicted["image"]) != list(test_table["image"]):
        raise ValueError(f"gate: {predictions.uri} does not list the test split's images in order "
                         f"({len(predicted)} predictions, {len(test_table)} test rows); re-run evaluate")
    mask, benchmark_note = benchmark_mask(test_table, params.benchmark)
    test_table = test_table[mask].reset_index(drop=True)
    y_true = test_table["label_index"].to_numpy()
    challenger_pred = predicted["predicted_index"].to_numpy()[mask]
    champion_pred = champion_predictions(Path(model.path), Path(raw.path), test_table, challenger_pred, params)
    baseline_pred, baseline_note = baseline_predictions(profile_dir, pd.read_parquet(train.path), test_table)
    decision = decide(y_true, challenger_pred, params.gate, champion_pred=champion_pred,
                      champion_version=str(params.champion_version), baseline_pred=baseline_pred,
                      operating_point=default_operating_point(profile_dir))
    mismatch = champion_benchmark_note(params)
    decision.reasons[:0] = [benchmark_note, *([mismatch] if mismatch else []), baseline_note]
    Path(decision_md.path).write_text(decision.markdown())
    annotate(decision_md, {**decision.metadata(), "reasons": decision.reasons, "conditions": decision.conditions,
                           "champion_version": params.champion_version, "benchmark": params.benchmark})
    log_metrics(gate_metrics, {**decision.metadata(), "blessed": int(decision.blessed),
                               "champion_version": params.champion_version, "benchmark_rows": int(mask.sum()),
                               "benchmark_version": _version_of(params.benchmark)})
    print(f"gate: {'blessed' if decision.blessed else 'NOT blessed'}; " + "; ".join(decision.reasons), flush=True)
    return decision.blessed


def _version_of(ref: str) -> int:
    """N of name@vN (0: no benchmark set), a number for the gate's Metrics."""
    return int(ref.rsplit("@v", 1)[1]) if "@v" in ref else 0
