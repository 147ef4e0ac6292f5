"""The ISIC 2019 table schemas and the checks on them, shared by ingest, merge and the demo generator."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dermpipe.config import AGES, CLASSES, GROUND_TRUTH_COLUMNS, METADATA_COLUMNS, SEXES, SITES

if TYPE_CHECKING:  # pandas only where a check runs: ingest's and merge's parameters are imported by pre-flight
    import pandas as pd

# The image files dermpipe reads, wherever it looks for them (ingest, merge, the drift monitor's image folders).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class SchemaError(ValueError):
    """A table does not have the ISIC 2019 layout; the message names the file and the column or row."""


@dataclass
class Problem:
    """One row-level problem found while checking a table; rows with problems are dropped or repaired, never lost."""

    image: str
    field: str
    value: str
    reason: str
    action: str  # "dropped" or "repaired" (value set to missing)


@dataclass
class CheckResult:
    table: pd.DataFrame
    problems: list[Problem] = field(default_factory=list)


def require_columns(table: pd.DataFrame, expected: tuple[str, ...], source: str) -> None:
    missing = [c for c in expected if c not in table.columns]
    if missing:
        raise SchemaError(
            f"{source}: missing column(s) {missing}; expected the ISIC 2019 columns {list(expected)}, "
            f"found {list(table.columns)}"
        )


def check_ground_truth(table: pd.DataFrame, source: str) -> CheckResult:
    """Keep rows with exactly one 1.0 over the nine label columns, never UNK, and a unique image id."""
    import pandas as pd

    require_columns(table, GROUND_TRUTH_COLUMNS, source)
    problems: list[Problem] = []
    labels = table[list(GROUND_TRUTH_COLUMNS[1:])].apply(pd.to_numeric, errors="coerce")
    not_binary = ~labels.isin([0.0, 1.0]).all(axis=1)
    ones = (labels == 1.0).sum(axis=1)
    duplicated = table["image"].duplicated(keep="first")
    keep = pd.Series(True, index=table.index)
    for idx in table.index:
        image = str(table.at[idx, "image"])
        reason = ""
        if duplicated[idx]:
            reason = "image id appears more than once in the ground truth (first row kept)"
        elif not_binary[idx]:
            reason = "label columns must all be 0.0 or 1.0"
        elif ones[idx] != 1:
            reason = f"expected exactly one 1.0 over {list(GROUND_TRUTH_COLUMNS[1:])}, found {int(ones[idx])}"
        elif labels.at[idx, "UNK"] == 1.0:
            reason = "UNK is set; UNK is not a training class"
        if reason:
            keep[idx] = False
            problems.append(Problem(image, "label", _row_labels(labels, idx), reason, "dropped"))
    kept = table[keep].copy()
    kept["label"] = labels[keep][list(CLASSES)].idxmax(axis=1)
    kept["label_index"] = kept["label"].map({c: i for i, c in enumerate(CLASSES)}).astype("int64")
    return CheckResult(kept[["image", "label", "label_index"]].reset_index(drop=True), problems)


def _row_labels(labels: pd.DataFrame, idx: int) -> str:
    return ",".join(f"{c}={labels.at[idx, c]}" for c in labels.columns)


def check_metadata(table: pd.DataFrame, source: str) -> CheckResult:
    """Repair out-of-vocabulary metadata values to missing (they are hints, not labels) and record each repair."""
    import pandas as pd

    require_columns(table, METADATA_COLUMNS, source)
    table = table[list(METADATA_COLUMNS)].copy()
    problems: list[Problem] = []
    age = pd.to_numeric(table["age_approx"], errors="coerce")
    bad_age = table["age_approx"].notna() & ~age.isin(AGES)
    bad_sex = table["sex"].notna() & ~table["sex"].isin(SEXES)
    bad_site = table["anatom_site_general"].notna() & ~table["anatom_site_general"].isin(SITES)
    checks = (
        ("age_approx", bad_age, "expected an age in 0-90 in steps of 5, or empty"),
        ("sex", bad_sex, f"expected one of {list(SEXES)}, or empty"),
        ("anatom_site_general", bad_site, f"expected one of {list(SITES)}, or empty"),
    )
    for column, bad, reason in checks:
        for idx in table.index[bad]:
            value = str(table.at[idx, column])
            problems.append(Problem(str(table.at[idx, "image"]), column, value, reason, "repaired"))
    table["age_approx"] = age.where(~bad_age)
    table.loc[bad_sex, "sex"] = None
    table.loc[bad_site, "anatom_site_general"] = None
    dup = table["image"].duplicated(keep="first")
    for idx in table.index[dup]:
        problems.append(Problem(str(table.at[idx, "image"]), "image", str(table.at[idx, "image"]),
                                "image id appears more than once in the metadata (first row kept)", "dropped"))
    return CheckResult(table[~dup].reset_index(drop=True), problems)
