"""merge: ground truth joined with metadata on `image`, checked against the ISIC 2019 schema, one label per row.

Every dropped row and every normalised or refused metadata value is counted in the stage's Metrics and listed in its
Markdown report. MergeParams sit beside run(); pre-flight imports them, so pandas and kfp are imported where they are
used, not at the top.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from dermpipe import config
from dermpipe.componentkit import check_choice, param
from dermpipe.data import licences
from dermpipe.data.image_check import ImageCheck, inspect_image_bytes
from dermpipe.data.schema import Problem, check_ground_truth, check_metadata, name_archive_diagnoses

if TYPE_CHECKING:
    import pandas as pd
    from kfp.dsl import Dataset, Markdown, Metrics

INVALID_IMAGES = ("drop", "fail")


@dataclass(frozen=True)
class MergeParams:
    invalid_images: str = param("drop", "drop (and report) or fail on corrupt/non-RGB/bomb images")

    def check(self) -> None:
        check_choice("merge", "invalid_images", self.invalid_images, INVALID_IMAGES)


MERGED_COLUMNS = (
    "image", "label", "label_index", "path", "sha256", "width", "height",
    "age_approx", "sex", "anatom_site_general", "lesion_id", "copyright_license", "attribution",
)


@dataclass
class MergeResult:
    table: pd.DataFrame
    problems: list[Problem] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    invalid: list[Problem] = field(default_factory=list)  # images that failed validation (subset of problems)


def read_isic_csv(path: Path) -> pd.DataFrame:
    """Read an ISIC CSV keeping ids as text and empty cells as missing."""
    import pandas as pd

    try:
        return pd.read_csv(path, dtype={"image": str, "lesion_id": str, "sex": str, "anatom_site_general": str})
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: cannot be parsed as CSV ({err}); expected the ISIC 2019 CSV") from err


# Real ISIC 2019 images reach 6000x4000 (24 MP); anything far beyond that is a decompression bomb, not a photo.
MAX_PIXELS = 64_000_000
_MODE_NAMES = {"L": "grey-scale", "LA": "grey-scale with alpha", "1": "black-and-white", "CMYK": "CMYK",
               "YCbCr": "YCbCr", "P": "palette", "RGBA": "RGB with alpha", "I": "32-bit integer", "F": "float"}


def inspect_bytes(data: bytes, *, max_pixels: int = MAX_PIXELS) -> tuple[int, int, str]:
    """(width, height, '') for a decodable RGB JPEG, else (width, height, reason); the reason names the defect.

    The checks are inspect_image_bytes' (bomb refused before decoding, JPEGs decoded at 1/8 scale); this words them
    for the merge report. Width and height are 0 where the pixel data could not be read.
    """
    check = inspect_image_bytes(data, max_pixels=max_pixels, formats=("JPEG",), modes=("RGB",))
    return _reason(check, max_pixels)


def _reason(check: ImageCheck, max_pixels: int) -> tuple[int, int, str]:
    width, height, problem = check.width, check.height, check.problem
    if not problem:
        return width, height, ""
    if problem == "empty":
        return 0, 0, "zero-byte file"
    if problem == "wrong_format":
        return width, height, f"not a JPEG (the file is {check.format}); ISIC 2019 images are JPEG"
    if problem == "bomb" and check.detail:  # Pillow's own guard, far beyond ours: the size is not read
        return 0, 0, f"decompression bomb: {check.detail}"
    if problem == "bomb":
        return width, height, (f"decompression bomb: {width}x{height} = {width * height / 1e6:.0f} MP "
                               f"exceeds the {max_pixels / 1e6:.0f} MP limit")
    if problem == "wrong_mode":
        return width, height, f"{_MODE_NAMES.get(check.mode, check.mode)} image (mode {check.mode}); expected RGB"
    if problem == "not_an_image":
        return 0, 0, "not an image: the content is not in any known image format (corrupt or wrong file)"
    if problem == "no_pixels":  # Pillow refuses such headers itself (not_an_image); kept for completeness
        return 0, 0, f"corrupt image data: {width}x{height} has no pixels"
    return 0, 0, f"{problem} image data: decoding failed ({check.detail})"  # truncated, corrupt


def inspect_image(path: Path, *, max_pixels: int = MAX_PIXELS) -> tuple[int, int, str]:
    """inspect_bytes on a file's content."""
    return inspect_bytes(path.read_bytes(), max_pixels=max_pixels)


def inspect_file(path: Path, *, max_pixels: int = MAX_PIXELS) -> tuple[int, int, str, str]:
    """Read a file once: (width, height, problem, sha256 of the content). One image in memory at a time."""
    data = path.read_bytes()
    width, height, problem = inspect_bytes(data, max_pixels=max_pixels)
    return width, height, problem, hashlib.sha256(data).hexdigest()


def merge_tables(
    ground_truth: pd.DataFrame,
    metadata: pd.DataFrame,
    image_files: dict[str, str],
    *,
    hashes: dict[str, str] | None = None,
    image_info: dict[str, tuple[int, int, str]] | None = None,
    sources: tuple[str, str] = (config.GROUND_TRUTH_CSV, config.METADATA_CSV),
) -> MergeResult:
    """Join ground truth (left) with metadata on `image`; keep rows whose image file exists and decodes.

    image_files maps image id (file stem) to the file's path relative to the dataset root.
    """
    truth = check_ground_truth(ground_truth, sources[0])
    meta = check_metadata(metadata, sources[1])
    archive_named = name_archive_diagnoses(truth.problems, metadata)
    problems = truth.problems + meta.problems
    table = truth.table.merge(meta.table, on="image", how="left", indicator=True)
    no_metadata = table["_merge"] == "left_only"
    table = table.drop(columns="_merge")
    table["path"] = table["image"].map(image_files)
    missing_file = table["path"].isna()
    for image in table.loc[missing_file, "image"]:
        problems.append(Problem(image, "image", image, "no image file for this ground-truth row", "dropped"))
    table = table[~missing_file].copy()
    info = image_info or {}
    table["width"] = table["image"].map(lambda i: info.get(i, (0, 0, ""))[0]).astype("int64")
    table["height"] = table["image"].map(lambda i: info.get(i, (0, 0, ""))[1]).astype("int64")
    unreadable = table["image"].map(lambda i: bool(info.get(i, (0, 0, ""))[2]))
    invalid = [Problem(image, "image", image_files[image], info[image][2], "dropped")
               for image in table.loc[unreadable, "image"]]
    problems += invalid
    table = table[~unreadable].copy()
    table["sha256"] = table["path"].map(lambda p: (hashes or {}).get(p, ""))
    labelled = set(truth.table["image"])
    unlabelled = sorted(set(image_files) - labelled)
    for image in unlabelled:
        problems.append(Problem(image, "image", image_files[image], "image file has no ground-truth row", "dropped"))
    duplicates = duplicate_problems(table)
    problems += duplicates
    table = licences.attach(table, metadata)  # '' where unknown: counted and listed in the report
    counts = {
        "ground_truth_rows": len(ground_truth),
        "metadata_rows": len(metadata),
        "image_files": len(image_files),
        "rows_out": len(table),
        "rows_without_metadata": int(no_metadata.sum()),
        "rows_dropped_bad_label": sum(1 for p in truth.problems if p.action == "dropped"),
        "rows_dropped_unk_archive_diagnosis": archive_named,
        "rows_dropped_missing_image": int(missing_file.sum()),
        "rows_dropped_unreadable_image": int(unreadable.sum()),
        **invalid_counts(invalid),
        "images_without_ground_truth": len(unlabelled),
        "metadata_values_normalised": sum(1 for p in meta.problems if p.action == "normalised"),
        "metadata_values_set_to_missing": sum(1 for p in meta.problems if p.action == "set to missing"),
        **duplicate_counts(table),
        **licences.metrics(table),
    }
    table = table.sort_values("image").reset_index(drop=True)
    return MergeResult(table[list(MERGED_COLUMNS)], problems, counts, invalid)


# Defect categories of inspect_bytes' reasons, in the order they are tested (first match wins).
INVALID_KINDS: tuple[tuple[str, str], ...] = (
    ("zero_byte", "zero-byte"), ("not_jpeg", "not a JPEG"), ("not_an_image", "not an image"),
    ("decompression_bomb", "decompression bomb"), ("truncated", "truncated"), ("corrupt", "corrupt"),
    ("not_rgb", "expected RGB"),
)


def invalid_kind(reason: str) -> str:
    return next((kind for kind, marker in INVALID_KINDS if marker in reason), "other")


def invalid_counts(invalid: list[Problem]) -> dict[str, int]:
    """invalid_<kind> for every defect category (zeros included, so dashboards always have the same series)."""
    counts = {f"invalid_{kind}": 0 for kind, _ in INVALID_KINDS}
    for problem in invalid:
        key = f"invalid_{invalid_kind(problem.reason)}"
        counts[key] = counts.get(key, 0) + 1
    return counts


def _duplicate_groups(table: pd.DataFrame) -> list[pd.DataFrame]:
    hashed = table[table["sha256"].astype(bool)] if "sha256" in table else table.iloc[:0]
    return [group for _, group in hashed.groupby("sha256", sort=True) if len(group) > 1]


def duplicate_problems(table: pd.DataFrame) -> list[Problem]:
    """Every image whose content is byte-identical to another kept image; kept, and kept in one split by split."""
    problems = []
    for group in _duplicate_groups(table):
        images = sorted(group["image"])
        labels = sorted(set(group["label"]))
        conflict = f"; labels differ ({', '.join(labels)}): check the ground truth" if len(labels) > 1 else ""
        for image in images:
            others = ", ".join(i for i in images if i != image)
            problems.append(Problem(image, "sha256", str(group["sha256"].iloc[0])[:16],
                                    f"exact duplicate (same content) of {others}{conflict}",
                                    "kept; split keeps duplicates together"))
    return problems


def duplicate_counts(table: pd.DataFrame) -> dict[str, int]:
    groups = _duplicate_groups(table)
    return {
        "duplicate_groups": len(groups),
        "duplicate_images": sum(len(g) - 1 for g in groups),  # copies beyond the first of each group
        "duplicate_groups_conflicting_labels": sum(1 for g in groups if g["label"].nunique() > 1),
    }


def render_report(result: MergeResult) -> str:
    """Markdown data report: counts, class distribution, missing values, metadata distributions, every problem."""
    import pandas as pd

    table = result.table
    lines = ["# Data report (merge)", "", "## Counts", "", "| what | count |", "|---|---:|"]
    lines += [f"| {k.replace('_', ' ')} | {v} |" for k, v in result.counts.items()]
    lines += ["", "## Classes", "", "| class | images | share |", "|---|---:|---:|"]
    counts = table["label"].value_counts()
    for cls in config.CLASSES:
        n = int(counts.get(cls, 0))
        lines.append(f"| {cls} | {n} | {n / max(len(table), 1):.1%} |")
    lines += ["", "## Missing values", "", "| column | missing |", "|---|---:|"]
    for column in ("age_approx", "sex", "anatom_site_general", "lesion_id"):
        lines.append(f"| {column} | {int(table[column].isna().sum())} |")
    for column in ("sex", "anatom_site_general", "age_approx"):
        lines += ["", f"## {column}", "", "| value | images |", "|---|---:|"]
        for value, n in table[column].value_counts(dropna=False).sort_index().items():
            lines.append(f"| {'(missing)' if pd.isna(value) else value} | {n} |")
    lines += licences.report_section(table)
    lines += ["", f"## Problems ({len(result.problems)})", ""]
    if not result.problems:
        lines.append("None found.")
    for title, problems in _problem_sections(result):
        lines += ["", f"### {title} ({len(problems)})", "", "| image | field | value | reason | action |",
                  "|---|---|---|---|---|"]
        lines += [f"| {p.image} | {p.field} | {_md(p.value)} | {_md(p.reason)} | {p.action} |" for p in problems]
    return "\n".join(lines) + "\n"


def _problem_sections(result: MergeResult) -> list[tuple[str, list[Problem]]]:
    """Problems grouped for the report: invalid images, missing files, orphans, duplicates, labels, metadata."""
    invalid = {id(p) for p in result.invalid}
    sections: dict[str, list[Problem]] = {}
    for p in result.problems:
        if id(p) in invalid:
            title = "Invalid images (failed validation)"
        elif p.field == "sha256":
            title = "Exact duplicates (same content hash)"
        elif p.reason.startswith("no image file"):
            title = "Ground-truth rows whose image is missing"
        elif p.reason.startswith("image file has no ground-truth row"):
            title = "Images with no ground-truth row"
        elif p.field == "isic_diagnosis":
            title = "Images dropped as UNK, by their ISIC Archive diagnosis"
        elif p.field == "label" or p.field == "image":
            title = "Ground truth and metadata rows dropped"
        elif p.action == "normalised":
            title = "Metadata values normalised the ISIC Archive's way (isic-metadata)"
        else:
            title = "Metadata values refused by isic-metadata (set to missing)"
        sections.setdefault(title, []).append(p)
    return list(sections.items())


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def merge_dataset(dataset_dir: Path, *, max_pixels: int = MAX_PIXELS, workers: int | None = None,
                  quiet: bool = True) -> MergeResult:
    """Read the ingested dataset folder, read and decode every labelled image once (hash + check), and merge."""
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

    from dermpipe.componentkit import CountProgress
    from dermpipe.data.schema import IMAGE_SUFFIXES

    image_root = dataset_dir / config.IMAGE_SUBDIR
    image_files = {
        p.stem: p.relative_to(dataset_dir).as_posix()
        for p in sorted(image_root.iterdir())
        if p.suffix.lower() in IMAGE_SUFFIXES
    }
    truth = read_isic_csv(dataset_dir / config.GROUND_TRUTH_CSV)
    labelled = sorted(set(truth["image"].astype(str)) & set(image_files))
    workers = workers or min(8, os.cpu_count() or 1)
    progress = CountProgress("validating", len(labelled))

    def check(image: str) -> tuple:
        found = inspect_file(dataset_dir / image_files[image], max_pixels=max_pixels)
        progress.update()
        return found

    with ThreadPoolExecutor(workers) as pool:  # PIL releases the GIL while decoding; results are a few numbers each
        checked = list(tqdm(pool.map(check, labelled), total=len(labelled), desc="validating", unit="img",
                            disable=quiet))
    info = {image: (w, h, problem) for image, (w, h, problem, _) in zip(labelled, checked, strict=True)}
    hashes = {image_files[image]: digest for image, (*_, digest) in zip(labelled, checked, strict=True)}
    return merge_tables(
        truth,
        read_isic_csv(dataset_dir / config.METADATA_CSV),
        image_files,
        hashes=hashes,
        image_info=info,
        sources=(str(dataset_dir / config.GROUND_TRUTH_CSV), str(dataset_dir / config.METADATA_CSV)),
    )


class InvalidImagesError(ValueError):
    """invalid_images='fail' and some images failed validation."""


def enforce_policy(result: MergeResult, policy: str, report_uri: str) -> None:
    """Raise when the policy is 'fail' and images failed validation; 'drop' keeps the (already dropped) result."""
    MergeParams(invalid_images=policy).check()
    if policy == "fail" and result.invalid:
        shown = "; ".join(f"{p.value}: {p.reason}" for p in result.invalid[:5])
        more = f" (and {len(result.invalid) - 5} more)" if len(result.invalid) > 5 else ""
        raise InvalidImagesError(
            f"{len(result.invalid)} image(s) failed validation and invalid_images='fail': {shown}{more}. "
            f"Every one is listed in the merge report {report_uri}. Replace or remove them, "
            "or run with invalid_images='drop' (--invalid-images drop) to drop and report them."
        )


def run(raw: Dataset, merged: Dataset, report: Markdown, stats: Metrics, invalid_images: str = "drop") -> None:
    from dermpipe.data.image_privacy import privacy_section, read_privacy_counts
    from dermpipe.lineage.artifacts import annotate, log_metrics

    MergeParams(invalid_images=invalid_images).check()
    result = merge_dataset(Path(raw.path))
    Path(report.path).parent.mkdir(parents=True, exist_ok=True)
    Path(report.path).write_text(render_report(result) + privacy_section(Path(raw.path)))  # what ingest stripped
    enforce_policy(result, invalid_images, report.uri)
    if result.table.empty:
        raise ValueError(f"{raw.path}: no usable rows after merging; see the problems listed in the merge report")
    Path(merged.path).parent.mkdir(parents=True, exist_ok=True)
    result.table.to_parquet(merged.path, index=False)
    annotate(merged, {
        "dataset_uri": raw.uri, "format": "parquet", "rows": len(result.table),
        "class_counts": result.table["label"].value_counts().to_dict(), "problems": len(result.problems),
        "invalid_images": len(result.invalid), "invalid_images_policy": invalid_images,
        **licences.annotation(result.table),
    })
    log_metrics(stats, {**result.counts, **read_privacy_counts(Path(raw.path))})
