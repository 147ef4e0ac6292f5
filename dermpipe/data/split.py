"""split: train/val/test, grouped so one lesion (or one exact duplicate) never spans splits.

Defaults are the seed notebook's: test 10 %, then validation 10 % of the rest, seed 42. Groups are the union of
`lesion_id` and image content hash (images without lesion_id are their own group unless they duplicate another).
With method "stratified", ratios are met to the nearest 1/k with a stratified group k-fold (scikit-learn's
StratifiedGroupKFold algorithm, vectorised: see stratified_group_folds).
With folds=k > 0 every train/val row also gets a `fold` in 0..k-1 (same groups) for cross-validation; test rows get
fold -1 (the test split stays held out).
Two methods: "hash" (the default: dermpipe.data.stable_split, each group's split from a hash of its key, so adding
data never moves an existing group) and "stratified" (the stratified group k-fold above: class shares within a
fraction of a point, but a group may change split whenever the data changes). Every row gets its `group_key`; with
a frozen benchmark set (dermpipe.data.benchmark) every benchmark group present goes to test, marked `in_benchmark`.
A third method, "file", takes the split from a CSV of image -> train/val/test (an official challenge split: see
dermpipe.data.split_file for its checks and the rule for a file without a test split); the file decides, so a lesion
may span splits, which the report counts.
SplitParams sit beside run(); pre-flight imports them, so pandas and kfp are imported where they are used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from dermpipe import config
from dermpipe.componentkit import check_choice, param
from dermpipe.data.split_file import check_split_file

if TYPE_CHECKING:
    import pandas as pd
    from kfp.dsl import Dataset, Markdown, Metrics

    from dermpipe.data.split_file import FileFindings, GivenSplit

# How split assigns groups: by a stable hash of the group key, stratified group k-fold, or as a CSV file gives them.
SPLIT_METHODS = ("hash", "stratified", "file")


def check_split_size(size: float) -> None:
    """A held-out fraction split can take: one fold of a k-fold with k = round(1/size) >= 2."""
    if not 0.0 < size < 0.5:
        raise ValueError(f"split size {size} is out of range; expected a fraction in (0, 0.5)")


def check_folds(folds: int) -> None:
    if folds != 0 and folds < 2:
        raise ValueError(f"folds={folds}: expected 0 (no cross-validation folds) or at least 2")


@dataclass(frozen=True)
class SplitParams:
    test_size: float = param(0.1, "fraction of lesions in the test split (the seed notebook's split)")
    val_size: float = param(0.1, "fraction of lesions in the validation split")
    seed: int = param(42, "seed of the lesion-grouped split (prepare shuffles its shards with it too)")
    folds: int = param(0, "also assign k cross-validation folds to train+val (0: off)")
    method: str = param("hash", "hash (a group's split never changes when data is added) | stratified (stratified "
                                "group k-fold: closer class shares, but groups move when the data changes) | file "
                                "(the split a CSV gives: split_file)")
    file: str = param("", "with method=file: a CSV of image,split (train/val/test), a local path or gs:// URI; a "
                          "file without test: its val is test, val is carved from train by lesion")
    file_sha256: str = param("", "the split file's sha256 (the runner pins it: a changed file misses the cache "
                                 "and a file changed mid-run is refused); empty: not checked")
    benchmark_uri: str = param("", "the frozen benchmark set's JSON file, whose groups all go to test "
                                   "(resolve-benchmark's output; empty: none)")

    def check(self, local: bool = True) -> None:
        """`local`: the run happens on this machine, so a split file may be a path here (else it must be gs://)."""
        check_choice("split", "method", self.method, SPLIT_METHODS)
        if self.method == "file":
            check_split_file(self.file, local=local)
        elif self.file.strip():
            raise ValueError(f"split_file={self.file!r} is set but split method={self.method!r}: set split_method=file "
                             f"(--split-method file) to use it, or leave split_file empty")
        check_split_size(self.test_size)
        check_split_size(self.val_size)
        check_folds(self.folds)


@dataclass
class Splits:
    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame
    findings: FileFindings | None = None  # method file: what the file and the data disagree on


def leakage_groups(table: pd.DataFrame) -> np.ndarray:
    """Group id per row: rows sharing a lesion_id or an identical sha256 are one group (union-find)."""
    parent = list(range(len(table)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for column in ("lesion_id", "sha256"):
        if column not in table:
            continue
        first: dict[str, int] = {}
        for i, key in enumerate(table[column].tolist()):
            if key is None or (isinstance(key, float) and np.isnan(key)) or key == "":
                continue
            if key in first:
                parent[find(i)] = find(first[key])
            else:
                first[key] = i
    return np.array([find(i) for i in range(len(table))])


def stratified_group_folds(labels: np.ndarray, groups: np.ndarray, n_splits: int, seed: int) -> np.ndarray:
    """Fold (0..n_splits-1) of every row: groups are never split, class shares are balanced across folds.

    The greedy algorithm of scikit-learn's StratifiedGroupKFold (groups taken in decreasing order of the spread of
    their class counts, each to the fold that minimises the mean over classes of the std of the per-fold class
    fractions; ties to the smaller fold), with the candidate folds scored in one vectorised step instead of a Python
    loop each. Same quality, >10x faster (benchmarks/split_speed.py): the full ISIC 2019 table splits in seconds.
    """
    classes, y = np.unique(labels, return_inverse=True)
    group_ids, g = np.unique(groups, return_inverse=True)
    counts = np.zeros((len(group_ids), len(classes)))
    np.add.at(counts, (g, y), 1)
    order = np.random.default_rng(seed).permutation(len(group_ids))  # shuffled, then stably sorted: seeded ties
    order = order[np.argsort(-counts[order].std(axis=1), kind="stable")]
    totals = counts.sum(axis=0)
    fold_counts = np.zeros((n_splits, len(classes)))
    fold_sizes = np.zeros(n_splits)
    group_fold = np.empty(len(group_ids), dtype=np.int64)
    for group in order:
        add = counts[group]
        fractions = fold_counts / totals  # (folds, classes)
        s1, s2 = fractions.sum(axis=0), (fractions ** 2).sum(axis=0)
        step = add / totals
        # Score of putting the group in fold i: the fractions change only in row i.
        new_s2 = s2 + 2 * fractions * step + step ** 2  # (folds, classes)
        variance = new_s2 / n_splits - ((s1 + step) / n_splits) ** 2
        score = np.sqrt(np.maximum(variance, 0)).mean(axis=1)
        best = np.flatnonzero(score <= score.min() + 1e-12)
        fold = best[np.argmin(fold_sizes[best])]
        fold_counts[fold] += add
        fold_sizes[fold] += add.sum()
        group_fold[group] = fold
    return group_fold[g]


def _holdout(labels: np.ndarray, groups: np.ndarray, size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(keep, holdout) row positions: one fold of a stratified group k-fold with k = round(1/size)."""
    check_split_size(size)
    n_splits = max(2, round(1.0 / size))
    n_groups = len(np.unique(groups))
    if n_groups < n_splits:
        raise ValueError(f"only {n_groups} lesion groups: too few to hold out {size:.0%} (need at least {n_splits})")
    folds = stratified_group_folds(labels, groups, n_splits, seed)
    return np.flatnonzero(folds != 0), np.flatnonzero(folds == 0)


def split_table(table: pd.DataFrame, *, test_size: float = 0.1, val_size: float = 0.1, seed: int = 42,
                folds: int = 0, method: str = "hash", benchmark: frozenset[str] = frozenset(),
                given: GivenSplit | None = None) -> Splits:
    """Leakage-free train/val/test split of the merged table (plus a `fold` column when folds > 0); `benchmark`:
    the group keys of a frozen benchmark set, whose groups all go to test; `given`: method file's split file."""
    from dermpipe.data.split_file import FILE_FORM, assign, groups_across
    from dermpipe.data.stable_split import group_keys, hash_buckets, in_benchmark

    check_choice("split", "method", method, SPLIT_METHODS)
    check_split_size(test_size)
    check_split_size(val_size)
    table, findings = table.reset_index(drop=True), None
    if method == "file":
        if given is None:
            raise ValueError("split method=file needs the split file (split_file): " + FILE_FORM)
        table, given_bucket, findings = assign(table, given)
    groups = leakage_groups(table)
    keys = group_keys(table, groups)
    forced = in_benchmark(table, keys, groups, set(benchmark))
    table = table.assign(group_key=keys, in_benchmark=forced)
    if findings is not None:
        bucket = _file_buckets(given_bucket, table["label"].to_numpy(), groups, keys, forced, val_size, seed)
        groups_across(bucket, keys, findings)
    elif method == "hash":
        bucket = hash_buckets(keys, test_size=test_size, val_size=val_size, seed=seed, forced_test=forced)
        _check_not_empty(bucket, keys)
    else:
        bucket = _stratified_buckets(table["label"].to_numpy(), groups, forced, test_size, val_size, seed)
    rest = np.flatnonzero(bucket != "test")
    if folds:
        table = table.assign(fold=-1)
        table.loc[rest, "fold"] = _folds(table["label"].to_numpy()[rest], groups[rest], keys[rest], folds, seed,
                                         method)
    return Splits(*(table[bucket == name].reset_index(drop=True) for name in ("train", "val", "test")), findings)


def _file_buckets(bucket: np.ndarray, labels: np.ndarray, groups: np.ndarray, keys: np.ndarray, forced: np.ndarray,
                  val_size: float, seed: int) -> np.ndarray:
    """The file's split; without a val split, val carved from train by lesion group (stratified, seeded). A frozen
    benchmark set's groups must be in the file's test split: the file decides, and a seen benchmark is no benchmark."""
    bucket = bucket.copy()
    if not (bucket == "val").any():
        train = np.flatnonzero(bucket == "train")
        _, val = _holdout(labels[train], groups[train], val_size, seed)
        bucket[train[val]] = "val"
    seen = sorted(set(keys[forced & (bucket != "test")].tolist()))
    if seen:
        raise ValueError(f"the split file puts {len(seen)} group(s) of the frozen benchmark set in train or val (e.g. "
                         f"{seen[:5]}); its groups must stay unseen: name no benchmark_set with this file, or freeze a "
                         f"set from a run that used it")
    return bucket


def _stratified_buckets(labels: np.ndarray, groups: np.ndarray, forced: np.ndarray, test_size: float,
                        val_size: float, seed: int) -> np.ndarray:
    """The stratified group k-fold split of the rows outside the benchmark; benchmark rows go to test."""
    bucket = np.full(len(labels), "test", dtype=object)
    free = np.flatnonzero(~forced)
    rest, _ = _holdout(labels[free], groups[free], test_size, seed)
    train, val = _holdout(labels[free][rest], groups[free][rest], val_size, seed)
    bucket[free[rest[train]]] = "train"
    bucket[free[rest[val]]] = "val"
    return bucket


def _check_not_empty(bucket: np.ndarray, keys: np.ndarray) -> None:
    empty = [name for name in ("train", "val", "test") if not (bucket == name).any()]
    if empty:
        raise ValueError(f"the hash split left {' and '.join(empty)} empty: only {len(set(keys))} groups, too few "
                         f"to hold out the requested fractions by hashing; add data, or use method=stratified")


def _check_fold_groups(groups: np.ndarray, folds: int) -> None:
    check_folds(folds)
    n_groups = len(np.unique(groups))
    if n_groups < folds:
        raise ValueError(f"only {n_groups} lesion groups outside the test split: too few for {folds} folds")


def _folds(labels: np.ndarray, groups: np.ndarray, keys: np.ndarray, folds: int, seed: int,
           method: str) -> np.ndarray:
    """Fold per train/val row: hashed from the group key (method hash) or stratified group k-fold."""
    from dermpipe.data.stable_split import hash_folds

    if method != "hash":
        return assign_folds(labels, groups, folds, seed)
    _check_fold_groups(groups, folds)
    fold = hash_folds(keys, folds, seed)
    empty = sorted(set(range(folds)) - set(fold.tolist()))
    if empty:
        raise ValueError(f"the hash split left fold(s) {empty} empty: only {len(np.unique(groups))} groups outside "
                         f"the test split, too few for {folds} folds by hashing; use fewer folds or method=stratified")
    return fold


def assign_folds(labels: np.ndarray, groups: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Fold index (0..folds-1) per row, stratified by label, never splitting a group."""
    _check_fold_groups(groups, folds)
    return stratified_group_folds(labels, groups, folds, seed)


def _parts(splits: Splits) -> dict[str, pd.DataFrame]:
    return {"train": splits.train, "val": splits.val, "test": splits.test}


def class_shares(splits: Splits) -> pd.DataFrame:
    """Rows: classes; columns: <split> counts, <split>_share and the overall share; deviation in points."""
    import pandas as pd

    parts = _parts(splits)
    everything = pd.concat(parts.values())
    frame = pd.DataFrame(index=list(config.CLASSES))
    frame["all"] = everything["label"].value_counts().reindex(frame.index, fill_value=0)
    frame["all_share"] = frame["all"] / max(len(everything), 1)
    for name, part in parts.items():
        frame[name] = part["label"].value_counts().reindex(frame.index, fill_value=0)
        frame[f"{name}_share"] = frame[name] / max(len(part), 1)
    return frame


def split_summary(splits: Splits) -> dict[str, float]:
    """Rows, fraction, lesions, per-class counts and the worst class-share deviation (points) of every split."""
    import pandas as pd

    total = sum(len(part) for part in _parts(splits).values())
    shares = class_shares(splits)
    summary: dict[str, float] = {}
    for name, part in _parts(splits).items():
        summary[f"{name}_rows"] = len(part)
        summary[f"{name}_fraction"] = round(len(part) / total, 4)
        summary[f"{name}_lesions"] = int(part["lesion_id"].nunique())
        for cls in config.CLASSES:
            summary[f"{name}_{cls}"] = int(shares.at[cls, name])
        deviation = (shares[f"{name}_share"] - shares["all_share"]).abs().max() * 100
        summary[f"{name}_max_class_share_deviation_pt"] = round(float(deviation), 3)
    if "fold" in splits.train:
        folds = pd.concat([splits.train, splits.val])["fold"].value_counts().sort_index()
        summary["folds"] = len(folds)
        summary.update({f"fold_{int(k)}_rows": int(v) for k, v in folds.items()})
    return summary


def render_report(splits: Splits, params: dict[str, object], bench: dict[str, object] | None = None) -> str:
    """Markdown split report: sizes, per-split class counts and shares against the overall share, folds."""
    shares, summary = class_shares(splits), split_summary(splits)
    lines = ["# Split report", "", "Parameters: " + ", ".join(f"{k}={v}" for k, v in params.items()), "",
             "| split | rows | fraction | lesions | worst class-share deviation |", "|---|---:|---:|---:|---:|"]
    for name in ("train", "val", "test"):
        lines.append(f"| {name} | {summary[f'{name}_rows']} | {summary[f'{name}_fraction']:.1%} | "
                     f"{summary[f'{name}_lesions']} | {summary[f'{name}_max_class_share_deviation_pt']:.2f} pt |")
    lines += ["", "## Class counts (share)", "", "| class | all | train | val | test |", "|---|---:|---:|---:|---:|"]
    for cls in config.CLASSES:
        cells = [f"{int(shares.at[cls, n])} ({shares.at[cls, f'{n}_share']:.1%})"
                 for n in ("all", "train", "val", "test")]
        lines.append(f"| {cls} | " + " | ".join(cells) + " |")
    if splits.findings is not None:
        from dermpipe.data.split_file import report_lines

        lines += [""] + report_lines(splits.findings)
    else:
        lines += ["", "No lesion_id and no exact duplicate (same sha256) appears in two splits: they are grouped "
                  "before splitting. " + _METHOD_NOTES.get(str(params.get("method", "stratified")), "")]
    if bench and bench.get("benchmark"):
        lines += ["", f"Frozen benchmark set **{bench['benchmark']}**: {bench['benchmark_rows']} rows of "
                  f"{bench['benchmark_groups'] - bench['benchmark_groups_absent']} of its {bench['benchmark_groups']} "
                  f"groups are in this data, all in test (`in_benchmark`); {bench['benchmark_groups_absent']} of "
                  f"its groups are not in this data."]
    if "folds" in summary:
        lines += ["", "## Cross-validation folds (train + val)", "", "| fold | rows |", "|---:|---:|"]
        lines += [f"| {k} | {int(summary[f'fold_{k}_rows'])} |" for k in range(int(summary["folds"]))]
    return "\n".join(lines) + "\n"


_METHOD_NOTES = {
    "hash": "Method hash: each group's split comes from a hash of its key and the seed, so adding data never "
            "moves an existing group; class shares deviate from the overall shares by sampling noise only.",
    "stratified": "Method stratified: deviations above 1 pt come from large lesion groups in rare classes; "
                  "groups may change split when the data changes.",
}


def benchmark_summary(splits: Splits, bench) -> dict[str, object]:
    """How much of the benchmark set the data holds: groups and rows present (all in test), groups absent."""
    from dermpipe.data.stable_split import row_keys

    rows = splits.test[splits.test["in_benchmark"]]
    present = set(rows["group_key"].astype(str)).union(*(set(c.dropna()) for _, c in row_keys(rows).items()))
    absent = len(set(bench.groups) - present)
    return {"benchmark": bench.ref, "benchmark_rows": int(splits.test["in_benchmark"].sum()),
            "benchmark_groups": len(bench.groups), "benchmark_groups_absent": absent}


def run(merged: Dataset, train: Dataset, val: Dataset, test: Dataset, stats: Metrics, report: Markdown,
        test_size: float, val_size: float, seed: int, folds: int = 0, method: str = "hash",
        benchmark_uri: str = "", file: str = "", file_sha256: str = "") -> None:
    from pathlib import Path

    import pandas as pd

    from dermpipe.data import licences
    from dermpipe.data.benchmark import load
    from dermpipe.data.split_file import FINDINGS_KEY, read_split_file
    from dermpipe.lineage.artifacts import annotate, log_metrics

    table = pd.read_parquet(merged.path)
    bench = load(benchmark_uri) if benchmark_uri.strip() else None
    given = read_split_file(file, file_sha256) if method == "file" else None
    splits = split_table(table, test_size=test_size, val_size=val_size, seed=seed, folds=folds, method=method,
                         benchmark=frozenset(bench.groups) if bench else frozenset(), given=given)
    params = {"test_size": test_size, "val_size": val_size, "seed": seed, "folds": folds, "method": method,
              **({"file": file, "file_sha256": given.sha256} if given else {})}
    extra = benchmark_summary(splits, bench) if bench else {"benchmark": ""}
    for name, artifact in (("train", train), ("val", val), ("test", test)):
        part = getattr(splits, name)
        part.to_parquet(artifact.path, index=False)
        annotate(artifact, {
            "split": name, "rows": len(part), "format": "parquet",
            "dataset_uri": merged.metadata.get("dataset_uri", ""),
            "class_counts": {c: int((part["label"] == c).sum()) for c in config.CLASSES},
            "params": params, "benchmark": extra["benchmark"], "benchmark_uri": benchmark_uri,
            **licences.annotation(part), **({FINDINGS_KEY: splits.findings.metrics()} if splits.findings else {}),
        })
    Path(report.path).parent.mkdir(parents=True, exist_ok=True)
    Path(report.path).write_text(render_report(splits, params, extra) + licences.split_report(_parts(splits)))
    log_metrics(stats, {**split_summary(splits), **{k: v for k, v in extra.items() if k != "benchmark"},
                        **(splits.findings.metrics() if splits.findings else {})})
