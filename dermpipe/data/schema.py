"""The ISIC 2019 table schemas and the checks on them, shared by ingest, merge and the demo generator."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from dermpipe.config import AGES, CLASSES, GROUND_TRUTH_COLUMNS, METADATA_COLUMNS, SEXES, SITES

if TYPE_CHECKING:  # pandas only where a check runs: ingest's and merge's parameters are imported by pre-flight
    import pandas as pd

# The image files dermpipe reads, wherever it looks for them (ingest, merge, the drift monitor's image folders).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class SchemaError(ValueError):
    """A table does not have the ISIC 2019 layout; the message names the file and the column or row."""


@dataclass
class Problem:
    """One row-level problem found while checking a table; rows with problems are dropped, values normalised or set to
    missing, never lost."""

    image: str
    field: str
    value: str
    reason: str
    action: str  # "dropped", "normalised" (the Archive's form of the value) or "set to missing"


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
            reason = UNK_REASON
        if reason:
            keep[idx] = False
            problems.append(Problem(image, "label", _row_labels(labels, idx), reason, "dropped"))
    kept = table[keep].copy()
    kept["label"] = labels[keep][list(CLASSES)].idxmax(axis=1)
    kept["label_index"] = kept["label"].map({c: i for i, c in enumerate(CLASSES)}).astype("int64")
    return CheckResult(kept[["image", "label", "label_index"]].reset_index(drop=True), problems)


UNK_REASON = "UNK is set; UNK is not a training class"
# The metadata columns isic: ingest writes: the ISIC Archive diagnosis an image's class was read from, and why.
DIAGNOSIS_COLUMNS = ("isic_diagnosis", "isic_diagnosis_reason")


def name_archive_diagnoses(problems: list[Problem], metadata: pd.DataFrame) -> int:
    """Name the ISIC Archive diagnosis of each image dropped as UNK, from the metadata's isic_diagnosis columns (an
    isic: source writes them); how many were named. Other sources (ISIC 2019 itself) have no such columns."""
    if not all(column in metadata for column in DIAGNOSIS_COLUMNS):
        return 0
    first = metadata.drop_duplicates("image", keep="first")  # check_metadata keeps the first row too
    first.index = first["image"].astype(str)
    named = 0
    for problem in problems:
        if problem.reason != UNK_REASON or problem.image not in first.index:
            continue
        diagnosis, why = (_text(first.at[problem.image, column]) for column in DIAGNOSIS_COLUMNS)
        problem.field, problem.value = "isic_diagnosis", diagnosis or "(none)"
        problem.reason = f"the ISIC Archive diagnosis maps to UNK ({why}); UNK is not a training class"
        named += 1
    return named


def _text(value: object) -> str:
    return "" if value is None or value != value else str(value).strip()  # NaN != NaN: an empty CSV cell


def _row_labels(labels: pd.DataFrame, idx: int) -> str:
    return ",".join(f"{c}={labels.at[idx, c]}" for c in labels.columns)


def check_metadata(table: pd.DataFrame, source: str) -> CheckResult:
    """Normalise sex, site and age the ISIC Archive's way (isic-metadata's validators) and refuse what they refuse.

    "Female" becomes "female", "Anterior Torso" "anterior torso", "85+" 85, an age 47 the Archive's age_approx 45:
    each change is a Problem with action "normalised". A value the validators refuse (a site "torso", a sex "F")
    is set to missing (they are hints, not labels), a Problem with action "set to missing". Nothing changes silently.
    """
    import pandas as pd

    require_columns(table, METADATA_COLUMNS, source)
    table = table[list(METADATA_COLUMNS)].copy()
    problems: list[Problem] = []
    for column in ARCHIVE_FIELDS:
        # isic-metadata once per distinct value: a column of 25,000 rows has a dozen
        verdicts = {raw: archive_value(column, raw) for raw in table[column].dropna().unique()}
        changed = table[column].map(lambda raw, v=verdicts: bool(v[raw][1]) if raw in v else False).astype(bool)
        for idx in table.index[changed]:
            raw = table.at[idx, column]
            value, reason, _ = verdicts[raw]
            action = "set to missing" if value is None else "normalised"
            problems.append(Problem(str(table.at[idx, "image"]), column, str(_plain(raw)), reason, action))
        table[column] = table[column].map(lambda raw, v=verdicts: v[raw][0] if raw in v else None)
    table["age_approx"] = pd.to_numeric(table["age_approx"], errors="coerce").astype("float64")
    dup = table["image"].duplicated(keep="first")
    for idx in table.index[dup]:
        problems.append(Problem(str(table.at[idx, "image"]), "image", str(table.at[idx, "image"]),
                                "image id appears more than once in the metadata (first row kept)", "dropped"))
    return CheckResult(table[~dup].reset_index(drop=True), problems)


# The metadata columns isic-metadata validates, and the MetadataRow field each is (age_approx is derived from age).
ARCHIVE_FIELDS = {"sex": "sex", "anatom_site_general": "anatom_site_general", "age_approx": "age"}
EXPECTED = {"sex": f"one of {list(SEXES)}", "anatom_site_general": f"one of {list(SITES)}",
            "age_approx": f"a whole number of years >= 0 (above {AGES[-1]}, and '85+', count as {AGES[-1]})"}


class ArchiveValue(NamedTuple):
    """One metadata value the ISIC Archive's way: `value` (None: missing), `note` (what changed or why it was
    refused; "" when the value was already the Archive's) and `refused` (isic-metadata's validators refused it)."""

    value: object
    note: str
    refused: bool = False


@functools.lru_cache(maxsize=4096, typed=True)  # the server asks per image; a vocabulary has a dozen values
def archive_value(column: str, raw: object) -> ArchiveValue:
    """Normalise one sex, anatom_site_general or age_approx value with isic-metadata's validators: merge and the
    model server both go through here, so a value is read the same way in training and in serving."""
    from isic_metadata.metadata import MetadataRow, convert_errors
    from pydantic import ValidationError

    field = ARCHIVE_FIELDS[column]
    given = _plain(raw)
    try:
        value = getattr(MetadataRow.model_validate({field: given}), field)
    except ValidationError as err:
        found = "; ".join(str(e["msg"]) for e in convert_errors(err))
        return ArchiveValue(None, f"isic-metadata refused it ({found}); expected {EXPECTED[column]}, or empty", True)
    if value is None:  # blank after isic-metadata strips it
        return ArchiveValue(None, "blank; set to missing")
    if column == "age_approx":
        value = int(round(value / 5.0) * 5)  # the Archive's age_approx (ages above 85 are 85 already)
        same = _number(raw) == value  # 55.0 or "55" is 55: unchanged
    else:
        value = getattr(value, "value", value)  # AnatomSiteGeneralEnum -> its text
        same = raw == value
    return ArchiveValue(value, "" if same else f"{given!r} normalised the ISIC Archive's way (isic-metadata) to "
                                               f"{value!r}")


def _plain(raw: object) -> object:
    """57.0 or "57.0" -> 57: pandas reads an age column with gaps as floats; the Archive's ages are integers."""
    number = _number(raw) if isinstance(raw, float | str) else None
    return int(number) if number is not None and number.is_integer() else raw


def _number(raw: object) -> float | None:
    try:
        return float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
