"""A given split: a CSV of image -> train/val/test (an official challenge split such as DermaMNIST's), checked
against the merged table.

The file has an `image` column (the ISIC image id, with or without its .jpg/.png suffix) and a `split` column
(train, val or test); other columns are ignored. It is read through dermpipe.storage (a local path or gs://), so a
cluster task reads the same file a local run does, and its sha256 is recorded (and checked when the run pinned one).
What the file and the data disagree on is counted and listed, never dropped silently: images the file names that
the data lacks (unknown), data images the file does not name (left out of every split), an image named twice.
A file is free to put one lesion in two splits (DermaMNIST splits by image, not by lesion); the split stage counts
such lesions and says so in its report instead of refusing the file.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from dermpipe import storage

if TYPE_CHECKING:
    import pandas as pd

SPLIT_NAMES = ("train", "val", "test")
REQUIRED_COLUMNS = ("image", "split")
# Report lists stop after this many names; the counts are always complete (the dropped set is data minus file).
LISTED = 200
FILE_FORM = "a CSV with columns image,split (split: train, val or test), as a local path or gs://bucket/key.csv"
# The rule for a file that names no test split (or no val split), as the report states it.
TEST_RULE = ("the file names no test split: its val images are the test split, and val is carved from its train "
             "images by lesion group (val_size of the groups, stratified by class, seeded)")
VAL_RULE = ("the file names no val split: val is carved from its train images by lesion group (val_size of the "
            "groups, stratified by class, seeded)")


def check_split_file(uri: str, *, local: bool = True) -> None:
    """Pre-flight: the file's form; a local file must exist and have the two columns (read with csv: no pandas).
    A cluster run (`local=False`) reads it in a task, so it must be a URI the task can open (gs://), not a path."""
    uri = uri.strip()
    if not uri:
        raise ValueError(f"split method=file needs split_file: {FILE_FORM}")
    if "://" in uri:
        if not storage.is_gcs(uri):
            raise ValueError(f"split_file={uri!r}: only local paths and gs:// are read; expected {FILE_FORM}")
        return
    if not local:
        raise ValueError(f"split_file={uri!r} is a path on this machine, which the cluster's split task cannot read: "
                         f"copy it to a bucket (gcloud storage cp {uri} gs://BUCKET/...) and pass the gs:// URI")
    from pathlib import Path

    if not Path(uri).is_file():
        raise ValueError(f"split_file={uri!r}: no such file; expected {FILE_FORM}")
    with open(uri, newline="", encoding="utf-8-sig") as handle:
        header = next(csv.reader(handle), [])
    _check_header(header, uri)


def _check_header(header: list[str], uri: str) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in [h.strip() for h in header]]
    if missing:
        raise ValueError(f"split file {uri}: missing column(s) {missing}; found {header}; expected {FILE_FORM}")


def file_sha256(uri: str) -> str:
    """The split file's content digest: the local runner and submit pin it, so a changed file misses the cache."""
    return hashlib.sha256(storage.read_bytes(uri.strip())).hexdigest()


@dataclass
class GivenSplit:
    """The file as read: image id -> split, with what was repaired on the way."""

    uri: str
    sha256: str
    assignment: dict[str, str]
    duplicates: list[str] = field(default_factory=list)  # named twice with the same split: kept once

    @property
    def named(self) -> set[str]:
        return set(self.assignment.values())


def image_id(name: str) -> str:
    """`ISIC_0024306.jpg` -> `ISIC_0024306` (the merged table's ids carry no suffix)."""
    from dermpipe.data.schema import IMAGE_SUFFIXES

    name = name.strip()
    for suffix in IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def read_split_file(uri: str, expected_sha256: str = "") -> GivenSplit:
    """Read and check the file: columns, split values (row numbers named), an image in two splits (refused)."""
    import pandas as pd

    data = storage.read_bytes(uri.strip())
    digest = hashlib.sha256(data).hexdigest()
    if expected_sha256.strip() and digest != expected_sha256.strip():
        raise ValueError(f"split file {uri} changed since the run was started: its sha256 is {digest}, the run pinned "
                         f"{expected_sha256.strip()}; start the run again to use the file as it is now")
    table = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False, encoding="utf-8-sig")
    table.columns = [str(c).strip() for c in table.columns]
    _check_header(list(table.columns), uri)
    if table.empty:
        raise ValueError(f"split file {uri} has no rows; expected {FILE_FORM}")
    images = table["image"].map(image_id)
    splits = table["split"].str.strip().str.lower()
    bad = splits[~splits.isin(SPLIT_NAMES)]
    if len(bad):  # CSV line numbers: the header is line 1
        shown = ", ".join(f"line {i + 2}: {table['split'][i]!r}" for i in bad.index[:10])
        raise ValueError(f"split file {uri}: {len(bad)} row(s) with a split other than {list(SPLIT_NAMES)} ({shown})")
    empty = images[images == ""]
    if len(empty):
        raise ValueError(f"split file {uri}: {len(empty)} row(s) with an empty image (line(s) "
                         f"{', '.join(str(i + 2) for i in empty.index[:10])})")
    return _assignment(uri, digest, images, splits)


def _assignment(uri: str, digest: str, images: pd.Series, splits: pd.Series) -> GivenSplit:
    pairs = (images + "\t" + splits).drop_duplicates()
    named = pairs.str.split("\t").str[0]
    conflicts = sorted(set(named[named.duplicated()]))
    if conflicts:
        raise ValueError(f"split file {uri}: {len(conflicts)} image(s) named in two splits ({', '.join(conflicts[:10])}"
                         f"); an image belongs to one split: fix the file")
    duplicates = sorted(set(images[images.duplicated()]))
    return GivenSplit(uri.strip(), digest, dict(zip(images, splits, strict=True)), duplicates)


@dataclass
class FileFindings:
    """What the file and the data disagree on, and how the final splits relate (for the report and metrics)."""

    uri: str
    sha256: str
    rules: list[str]
    unknown: list[str]  # named in the file, absent from the data
    unnamed: list[str]  # in the data, not named by the file: left out of every split
    duplicates: list[str]
    across: dict[str, list[str]] = field(default_factory=dict)  # "train-test" -> group keys in both
    across_rows: int = 0
    test_rows_seen: int = 0  # test images whose lesion group has images in train or val

    def metrics(self) -> dict[str, int]:
        counts = {"file_unknown_images": len(self.unknown), "file_unnamed_images_left_out": len(self.unnamed),
                  "file_duplicate_rows": len(self.duplicates), "file_groups_across_splits":
                  len(set().union(*self.across.values())) if self.across else 0,
                  "file_rows_in_groups_across_splits": self.across_rows,
                  "file_test_rows_with_lesion_in_train_or_val": self.test_rows_seen}
        counts.update({f"file_groups_across_{pair.replace('-', '_')}": len(keys) for pair, keys in self.across.items()})
        return counts


# The split artifacts' annotation holding method file's findings (FileFindings.metrics()); evaluate reads it off its
# test split, and the model card off evaluate's metrics, so the test figures carry their caveat to the deployed version.
FINDINGS_KEY = "split_findings"
# What evaluate logs of them: a lesion in two splits makes the test figures optimistic.
EVALUATED_FINDINGS = ("file_groups_across_splits", "file_test_rows_with_lesion_in_train_or_val")


def evaluation_metrics(test_metadata: Mapping[str, Any]) -> dict[str, int]:
    """The metrics evaluate logs beside its test figures for a split given by file (split_method_file 1 and the
    findings, prefixed split_); {} for a hash or stratified split, which keep each lesion in one split."""
    if (test_metadata.get("params") or {}).get("method") != "file":
        return {}
    found = test_metadata.get(FINDINGS_KEY) or {}
    return {"split_method_file": 1, **{f"split_{k}": int(found[k]) for k in EVALUATED_FINDINGS if k in found}}


def assign(table: pd.DataFrame, given: GivenSplit) -> tuple[pd.DataFrame, np.ndarray, FileFindings]:
    """(the rows the file names, their split as the file says, the findings so far). Refuses a file that matches
    no image of the data, or names no train split or nothing held out."""
    ids = table["image"].astype(str)
    known = set(ids)
    unknown = sorted(set(given.assignment) - known)
    if len(unknown) == len(given.assignment):
        raise ValueError(f"split file {given.uri}: none of its {len(unknown)} images is in the data (e.g. "
                         f"{unknown[:3]}; the data has e.g. {sorted(known)[:3]}): is it the split of this data set?")
    named = ids.isin(given.assignment.keys()).to_numpy()
    kept = table[named].reset_index(drop=True)
    bucket = kept["image"].astype(str).map(given.assignment).to_numpy(dtype=object)
    present = set(bucket.tolist())
    if "train" not in present or present == {"train"}:
        raise ValueError(f"split file {given.uri}: the data's images it names are all in {sorted(present)}; expected "
                         f"train and at least one of val, test")
    rules = [f"the split is given by the file {given.uri} (sha256 {given.sha256[:12]}…)"]
    if "test" not in present:
        bucket[bucket == "val"] = "test"
        rules.append(TEST_RULE)
    elif "val" not in present:
        rules.append(VAL_RULE)
    findings = FileFindings(given.uri, given.sha256, rules, unknown, sorted(ids[~named]), given.duplicates)
    return kept, bucket, findings


def groups_across(bucket: np.ndarray, keys: np.ndarray, findings: FileFindings) -> None:
    """Fill `findings` with the lesions (or exact duplicates) the file put in two splits: the group keys per pair of
    splits, the rows in such groups, and the test rows among them (a lesion a model may have seen)."""
    splits_of: dict[str, set[str]] = {}
    for key, name in zip(keys.tolist(), bucket.tolist(), strict=True):
        splits_of.setdefault(str(key), set()).add(str(name))
    across: dict[str, list[str]] = {}
    for i, first in enumerate(SPLIT_NAMES):
        for second in SPLIT_NAMES[i + 1:]:
            across[f"{first}-{second}"] = sorted(k for k, s in splits_of.items() if {first, second} <= s)
    spanning = {k for k, s in splits_of.items() if len(s) > 1}
    in_spanning = np.array([str(key) in spanning for key in keys.tolist()], dtype=bool)
    findings.across, findings.across_rows = across, int(in_spanning.sum())
    findings.test_rows_seen = int((in_spanning & (bucket == "test")).sum())


def _listed(names: list[str]) -> str:
    more = f" … and {len(names) - LISTED} more" if len(names) > LISTED else ""
    return ", ".join(names[:LISTED]) + more


def report_lines(findings: FileFindings) -> list[str]:
    """The split report's section on the given split: the rules applied, the disagreements, lesions across splits."""
    lines = ["## The given split", ""] + [f"- {rule[0].upper()}{rule[1:]}." for rule in findings.rules]
    lines.append(f"- Images the file names that the data does not have (unknown): {len(findings.unknown)}"
                 + (f": {_listed(findings.unknown)}" if findings.unknown else "") + ".")
    lines.append(f"- Data images the file does not name, left out of every split: {len(findings.unnamed)}"
                 + (f": {_listed(findings.unnamed)}" if findings.unnamed else "") + ".")
    if findings.duplicates:
        lines.append(f"- Images named twice with the same split (kept once): {len(findings.duplicates)}: "
                     f"{_listed(findings.duplicates)}.")
    spanning = set().union(*findings.across.values()) if findings.across else set()
    if not spanning:
        lines += ["", "No lesion_id and no exact duplicate (same sha256) has images in two splits."]
        return lines
    pairs = ", ".join(f"{pair} {len(keys)}" for pair, keys in findings.across.items())
    lines += ["", f"**The file splits by image, not by lesion**: {len(spanning)} lesion groups (lesion_id or exact "
              f"duplicate; {findings.across_rows} images) have images in two splits ({pairs}); "
              f"{findings.test_rows_seen} test images have a lesion in train or val. A model has seen "
              f"another image of such a lesion, so figures on this split are optimistic next to a lesion-grouped "
              f"split and not comparable one to one. Groups: {_listed(sorted(spanning))}."]
    return lines
