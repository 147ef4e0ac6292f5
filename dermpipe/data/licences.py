"""Every image's licence and attribution, from ingest to the registry version.

Two per-image columns with the ISIC Archive's own field names, `copyright_license` and `attribution` (what the
Archive's API and isic-cli's metadata.csv carry: CC-0, CC-BY or CC-BY-NC, and the institution to credit). Where they
come from:
- an `isic:` download: the Archive's fields for each image, written into the metadata CSV by the isic source;
- a data set whose licence is known as a whole (KNOWN_DATASETS: Kaggle's ISIC 2019, the demo): ingest fills them;
- a folder, zip or gs:// copy: kept when its metadata CSV has them, otherwise empty, which means *unknown*.
Merge carries them into the merged table (empty where unknown) and counts them in its Metrics and data report;
split keeps them per row and counts them per split; profile summarises the images the model learnt from
(train + val) into licences.json, which deploy turns into the version's `licences` record and attribution.txt.

Import-light on purpose (ingest's and split's parameters are imported by pre-flight): pandas inside functions.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

LICENCE_COLUMNS: tuple[str, ...] = ("copyright_license", "attribution")  # the ISIC Archive's field names
LICENCES_FILE = "licences.json"  # the profile's summary of the training images' licences, copied into a version
ATTRIBUTION_FILE = "attribution.txt"  # isic-cli's name for the same list (`isic image download`)
UNKNOWN = "unknown"  # how an empty licence is shown; the tables keep it empty
ANONYMOUS = "Anonymous"  # the Archive's attribution of an image whose contributor asked not to be named


@dataclass(frozen=True)
class DatasetLicence:
    """The licence and attribution of a data set published under one licence as a whole."""

    copyright_license: str
    attribution: str


ISIC_2019 = DatasetLicence(
    "CC-BY-NC-4.0",
    "ISIC 2019 challenge training data, ISIC Archive (International Skin Imaging Collaboration): HAM10000 "
    "(Tschandl et al., Sci. Data 2018), BCN20000 (Combalia et al., 2019), MSK (Codella et al., ISBI 2017)")
DEMO = DatasetLicence("CC-0", "dermpipe demo data (synthetic lesions drawn by dermpipe, no patient images)")
# (source kind, location without a Kaggle /versions/N) -> the data set's licence
KNOWN_DATASETS: dict[tuple[str, str], DatasetLicence] = {
    ("kaggle", "andrewmvd/isic-2019"): ISIC_2019,
    ("demo", ""): DEMO,
}

# CC0 / CC-0, CC-BY[-NC][-SA|-ND][-4.0] and the same with spaces or underscores: the Archive's values and SPDX ids
_CC = re.compile(r"^CC-?(?:(0|ZERO)|BY((?:-(?:NC|SA|ND))*))(?:-\d(?:\.\d)?)?$")


@dataclass(frozen=True)
class Terms:
    """What a licence allows, as far as dermpipe needs to know: `known` is False for an empty or unrecognised value
    (then nothing is assumed: neither commercial use nor the absence of an attribution duty)."""

    known: bool
    commercial: bool = False
    attribution: bool = False


@functools.lru_cache(maxsize=256)  # a data set has a handful of distinct values over thousands of rows
def terms(licence: str) -> Terms:
    """The terms of a licence value (`CC-BY-NC`, `CC-BY-NC-4.0`, `CC0`, ...); unknown when empty or unrecognised."""
    match = _CC.match(re.sub(r"[\s_]+", "-", licence.strip().upper()))
    if not match:
        return Terms(False)
    if match.group(1):  # CC0: public domain dedication
        return Terms(True, commercial=True, attribution=False)
    return Terms(True, commercial="-NC" not in (match.group(2) or ""), attribution=True)


def dataset_licence(kind: str, location: str) -> DatasetLicence | None:
    """The licence of a data set known as a whole (KNOWN_DATASETS), or None: then the metadata CSV's columns count."""
    return KNOWN_DATASETS.get((kind, re.sub(r"/versions/\d+$", "", location.strip())))


def _text(value: Any) -> str:
    """A cell as text: missing (None, NaN, empty) is ''."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    return str(value).strip()


def licence_columns(metadata: pd.DataFrame) -> pd.DataFrame:
    """image, copyright_license, attribution of a metadata table (first row per image; '' where absent)."""
    import pandas as pd

    first = metadata.drop_duplicates("image", keep="first")
    columns = {"image": first["image"].astype(str)}
    for column in LICENCE_COLUMNS:
        values = first[column] if column in first else pd.Series([None] * len(first), index=first.index)
        columns[column] = values.map(_text)
    return pd.DataFrame(columns).reset_index(drop=True)


def attach(table: pd.DataFrame, metadata: pd.DataFrame) -> pd.DataFrame:
    """`table` with each image's licence columns from the metadata table ('' for an image without a metadata row)."""
    joined = table.drop(columns=[c for c in LICENCE_COLUMNS if c in table]).merge(
        licence_columns(metadata), on="image", how="left")
    for column in LICENCE_COLUMNS:
        joined[column] = joined[column].fillna("")
    return joined


def fill(metadata: pd.DataFrame, licence: DatasetLicence) -> tuple[pd.DataFrame, int]:
    """The data set's licence and attribution in every row whose cells are empty; (table, rows filled)."""
    table = licence_columns(metadata).set_index("image").reindex(metadata["image"].astype(str))
    empty = (table["copyright_license"] == "").to_numpy()
    out = metadata.copy()
    for column in LICENCE_COLUMNS:
        out[column] = table[column].to_numpy()
        out.loc[empty, column] = getattr(licence, column)
    return out, int(empty.sum())


def _column(table: pd.DataFrame, column: str) -> list[str]:
    return [_text(v) for v in table[column]] if column in table else [""] * len(table)


def summarise(table: pd.DataFrame) -> dict[str, Any]:
    """Images per licence, how many are non-commercial, unknown (empty) or unrecognised, attribution duties, and
    the attributions with their image counts (most images first, `Anonymous` last: isic-cli's attribution order)."""
    licences, attributions = _column(table, "copyright_license"), _column(table, "attribution")
    found = [terms(value) for value in licences]
    by_licence = Counter(value or UNKNOWN for value in licences)
    credits = Counter((a, lic) for a, lic in zip(attributions, licences, strict=True) if a)
    summary = {
        "images": len(licences),
        "licences": dict(sorted(by_licence.items(), key=lambda item: (-item[1], item[0]))),
        "non_commercial": sum(1 for t in found if t.known and not t.commercial),
        "unknown": sum(1 for value in licences if not value),
        "unrecognised": sum(1 for value, t in zip(licences, found, strict=True) if value and not t.known),
        "attribution_missing": sum(1 for a, t in zip(attributions, found, strict=True) if t.attribution and not a),
        "attributions": [{"attribution": a, "copyright_license": lic, "images": n}
                         for (a, lic), n in sorted(credits.items(), key=_credit_order)],
    }
    summary["commercial_use"] = commercial_use(summary)
    return summary


def _credit_order(item: tuple[tuple[str, str], int]) -> tuple[int, int, str, str]:
    (attribution, licence), n = item
    return (attribution == ANONYMOUS, -n, attribution, licence)


def commercial_use(summary: dict[str, Any]) -> str:
    """'not allowed' when any image is non-commercial, else 'unknown' when any licence is, else 'allowed'."""
    if summary.get("non_commercial"):
        return "not allowed"
    if summary.get("unknown") or summary.get("unrecognised") or not summary.get("images"):
        return "unknown"
    return "allowed"


def restrictions(summary: dict[str, Any]) -> tuple[int, int, int]:
    """(images, non-commercial images, images whose licence is unknown or unrecognised) of a summary."""
    return (int(summary.get("images", 0)), int(summary.get("non_commercial", 0)),
            int(summary.get("unknown", 0)) + int(summary.get("unrecognised", 0)))


def verdict(summary: dict[str, Any] | None) -> str:
    """One line for a listing: what the licences of these images allow, with the counts behind it."""
    if not summary:
        return "licences not recorded: commercial use unknown"
    total, non_commercial, unknown = restrictions(summary)
    parts = [f"NON-COMMERCIAL: {non_commercial} of {total} images are licensed for non-commercial use only"] \
        if non_commercial else []
    parts += [f"licence unknown for {unknown} of {total} images"] if unknown else []
    return "; ".join(parts) or (f"commercial use allowed by all {total} images' licences "
                                f"({', '.join(summary.get('licences', {}))})")


def short_verdict(summary: dict[str, Any] | None) -> str:
    """A column's worth: non-commercial | unknown | commercial."""
    use = commercial_use(summary) if summary else "unknown"
    return {"not allowed": "non-commercial", "allowed": "commercial"}.get(use, "unknown")


def metrics(table: pd.DataFrame) -> dict[str, int]:
    """The licence counts of a stage's Metrics: the same series whatever the data (zeros included)."""
    summary = summarise(table)
    known = summary["images"] - summary["unknown"] - summary["unrecognised"]
    return {"licence_known": known, "licence_unknown": summary["unknown"],
            "licence_unrecognised": summary["unrecognised"], "licence_non_commercial": summary["non_commercial"],
            "licence_attribution_missing": summary["attribution_missing"]}


def report_section(table: pd.DataFrame, *, listed: int = 20) -> list[str]:
    """Markdown: images per licence with their terms, and what is unknown, unrecognised or lacks an attribution."""
    summary = summarise(table)
    lines = ["", "## Licences (copyright_license, attribution)", "", verdict(summary) + ".", "",
             "| copyright_license | images | commercial use | attribution required |", "|---|---:|---|---|"]
    for licence, n in summary["licences"].items():
        found = terms("" if licence == UNKNOWN else licence)
        use, credit = ("yes" if found.commercial else "no", "yes" if found.attribution else "no") if found.known \
            else ("unknown", "unknown")
        lines.append(f"| {licence if found.known or licence == UNKNOWN else licence + ' (unrecognised)'} | {n} | "
                     f"{use} | {credit} |")
    for title, images in _licence_problems(table).items():
        shown = ", ".join(images[:listed]) + (f" and {len(images) - listed} more" if len(images) > listed else "")
        lines += ["", f"{title} ({len(images)}): {shown}."]
    return lines


def _licence_problems(table: pd.DataFrame) -> dict[str, list[str]]:
    licences, attributions = _column(table, "copyright_license"), _column(table, "attribution")
    images = [str(i) for i in table["image"]] if "image" in table else []
    problems: dict[str, list[str]] = {}
    for image, licence, attribution in zip(images, licences, attributions, strict=True):
        found = terms(licence)
        if not licence:
            title = ("Images whose licence is unknown (no copyright_license in the source's metadata CSV): "
                     "kept, but the models trained on them cannot say what they may be used for")
        elif not found.known:
            title = "Images whose copyright_license is not a licence dermpipe recognises (kept as given)"
        elif found.attribution and not attribution:
            title = "Images whose licence requires an attribution but have none"
        else:
            continue
        problems.setdefault(title, []).append(image)
    return problems


def attribution_text(summary: dict[str, Any]) -> str:
    """attribution.txt of a model version: what the training images' licences ask users to credit, and the counts."""
    lines = ["Images this model was trained on (train + validation splits), by licence and attribution.",
             verdict(summary) + ".", "", "Licences: " + ", ".join(f"{k} {v}" for k, v in summary["licences"].items()),
             "", "Attributions (images, licence):"]
    lines += [f"{c['attribution']} ({c['images']}, {c['copyright_license'] or UNKNOWN})"
              for c in summary["attributions"]]
    if not summary["attributions"]:
        lines.append("none recorded")
    return "\n".join(lines) + "\n"


def annotation(part: pd.DataFrame) -> dict[str, Any]:
    """A Dataset artifact's licence metadata (merged table, a split): images per licence, what they allow."""
    summary = summarise(part)
    return {"licences": summary["licences"], "licence_unknown": summary["unknown"] + summary["unrecognised"],
            "licence_non_commercial": summary["non_commercial"], "commercial_use": summary["commercial_use"]}


def split_report(parts: dict[str, pd.DataFrame]) -> str:
    """The split report's licence section: images per licence in each split, and what each split's allow."""
    summaries = {name: summarise(part) for name, part in parts.items()}
    names = sorted({k for s in summaries.values() for k in s["licences"]})
    lines = ["", "## Licences per split", "", "| copyright_license | " + " | ".join(summaries) + " |",
             "|---|" + "---:|" * len(summaries)]
    lines += [f"| {licence} | " + " | ".join(str(s["licences"].get(licence, 0)) for s in summaries.values()) + " |"
              for licence in names]
    lines += ["", *(f"- {name}: {verdict(s)}" for name, s in summaries.items())]
    return "\n".join(lines) + "\n"


TRAINED_ON = ("train", "val")  # the images a model learnt from or was tuned on (early stopping, calibration)


def write_training(tables: dict[str, pd.DataFrame], folder: Path) -> dict[str, Any]:
    """licences.json in `folder`: the summary of the train + val images (`trained_on`, with the attributions) and of
    each split; deploy copies it into the version. Returns what it wrote."""
    import json

    import pandas as pd

    learnt = pd.concat([tables[name] for name in TRAINED_ON if name in tables], ignore_index=True)
    record = {"columns": list(LICENCE_COLUMNS), "trained_on_splits": [n for n in TRAINED_ON if n in tables],
              "trained_on": summarise(learnt),
              "splits": {name: annotation(table) for name, table in tables.items()}}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / LICENCES_FILE).write_text(json.dumps(record, indent=1))
    return record
