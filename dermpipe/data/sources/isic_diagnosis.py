"""The ISIC Archive's diagnosis -> one of the eight ISIC 2019 classes, or UNK: one explicit table.

The table is `isic_diagnosis.csv` beside this module: every value of isic-metadata's hierarchical `DiagnosisEnum`
(scheme `hierarchical`, e.g. `Benign:Benign melanocytic proliferations:Nevus:Nevus, Spitz`) and of its
`LegacyDxEnum` (scheme `legacy`, the Archive's flat `diagnosis` before 2024) is listed once, with its class and why.
No substring rule: "Nevus sebaceus" is not NV, "Kaposi sarcoma" is not VASC, "Hemorrhage" is VASC as HAM10000 counts
it. A test walks both enums, so a new isic-metadata release with a value the table lacks fails the tests, not a
training run; at ingest such a value becomes UNK (merge drops and lists it) with a warning naming it.

An Archive record gives its diagnosis as levels `diagnosis_1`..`diagnosis_5`. Full levels are joined with ":" (the
Archive's own form); a record with gaps (only `diagnosis_3`, say) is read the way isic-metadata reads a terminal
value: the deepest level names the one enum value that ends with it, and the levels given must agree with it.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from dermpipe.config import CLASSES

TABLE = Path(__file__).with_name("isic_diagnosis.csv")
LEVELS = tuple(f"diagnosis_{i}" for i in range(1, 6))
SCHEMES = ("hierarchical", "legacy")
UNK = "UNK"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DiagnosisClass:
    """The class of one record: `diagnosis` is the value looked up ("" when the record has none)."""

    isic2019_class: str
    diagnosis: str
    why: str


class DiagnosisTableError(ValueError):
    """isic_diagnosis.csv is malformed; the message names the row."""


@cache
def table() -> dict[tuple[str, str], tuple[str, str]]:
    """(scheme, diagnosis) -> (class, why), read once from isic_diagnosis.csv and checked row by row."""
    rows: dict[tuple[str, str], tuple[str, str]] = {}
    with open(TABLE, newline="", encoding="utf-8") as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            key, cls = (row["scheme"], row["diagnosis"]), row["isic2019_class"]
            if row["scheme"] not in SCHEMES or cls not in (*CLASSES, UNK) or key in rows:
                raise DiagnosisTableError(
                    f"{TABLE}:{line}: {row}: expected a scheme in {list(SCHEMES)}, a class in "
                    f"{[*CLASSES, UNK]} and each (scheme, diagnosis) once")
            rows[key] = (cls, row["why"])
    return rows


@cache
def _by_terminal() -> dict[str, tuple[str, ...]]:
    """Last level -> every hierarchical value ending with it (isic-metadata's `accept_terminal_values`)."""
    ends: dict[str, list[str]] = {}
    for scheme, value in table():
        if scheme == "hierarchical":
            ends.setdefault(value.split(":")[-1], []).append(value)
    return {end: tuple(values) for end, values in ends.items()}


def hierarchical_value(clinical: dict[str, Any]) -> str:
    """The record's full hierarchical diagnosis ("" when it has no level, or its levels name no one value)."""
    levels = [str(clinical.get(name) or "").strip() for name in LEVELS]
    given = [level for level in levels if level]
    if not given:
        return ""
    depth = max(i for i, level in enumerate(levels) if level) + 1
    if all(levels[:depth]):
        return ":".join(levels[:depth])
    candidates = [value for value in _by_terminal().get(given[-1], ())
                  if _agrees(value.split(":"), levels)]
    return candidates[0] if len(candidates) == 1 else ":".join(levels[:depth])


def _agrees(parts: list[str], levels: list[str]) -> bool:
    """Every level the record gives is the value's level at that depth, and the value is no deeper."""
    depth = max(i for i, level in enumerate(levels) if level) + 1
    return len(parts) == depth and all(not lv or lv == part for lv, part in zip(levels, parts, strict=False))


def classify(clinical: dict[str, Any]) -> DiagnosisClass:
    """The ISIC 2019 class of an Archive record's clinical metadata, the diagnosis it was read from, and why."""
    value = hierarchical_value(clinical)
    scheme = "hierarchical"
    if not value:
        value, scheme = str(clinical.get("diagnosis") or "").strip(), "legacy"
        if ":" in value:  # the Archive's colon-joined form in the flat field
            scheme = "hierarchical"
    if not value:
        return DiagnosisClass(UNK, "", "the record has no diagnosis")
    found = table().get((scheme, value))
    if found is None:
        _warn_unknown(scheme, value)
        return DiagnosisClass(UNK, value, f"not in {TABLE.name} (scheme {scheme})")
    return DiagnosisClass(found[0], value, found[1])


@cache
def _warn_unknown(scheme: str, value: str) -> None:
    """Once per value: a diagnosis the table lacks (a newer isic-metadata, or a malformed record)."""
    log.warning("ISIC diagnosis %r (%s) is not in %s: its images are UNK, which merge drops and lists. If it is a "
                "new isic-metadata value, add it to the table with its ISIC 2019 class.", value, scheme, TABLE)


def isic2019_class(clinical: dict[str, Any]) -> str:
    """The ISIC 2019 class of an Archive record's clinical metadata, or UNK."""
    return classify(clinical).isic2019_class
