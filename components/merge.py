"""merge: ground truth joined with metadata on `image`, checked against the ISIC 2019 schema, one label per row.

Every dropped or repaired row is counted in the stage's Metrics and listed in its Markdown report.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from kfp.dsl import Dataset, Input, Markdown, Metrics, Output

from dermpipe import config
from dermpipe.componentkit import stage_component
from dermpipe.schema import Problem, check_ground_truth, check_metadata

MERGED_COLUMNS = (
    "image", "label", "label_index", "path", "sha256", "width", "height",
    "age_approx", "sex", "anatom_site_general", "lesion_id",
)


@dataclass
class MergeResult:
    table: pd.DataFrame
    problems: list[Problem] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


def read_isic_csv(path: Path) -> pd.DataFrame:
    """Read an ISIC CSV keeping ids as text and empty cells as missing."""
    try:
        return pd.read_csv(path, dtype={"image": str, "lesion_id": str, "sex": str, "anatom_site_general": str})
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: cannot be parsed as CSV ({err}); expected the ISIC 2019 CSV") from err


def inspect_image(path: Path) -> tuple[int, int, str]:
    """(width, height, '') for a readable RGB image, else (0, 0, reason). Decodes fully so truncation shows."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            if im.mode not in ("RGB", "L", "RGBA", "CMYK"):
                return 0, 0, f"unsupported colour mode {im.mode}"
            return im.width, im.height, ""
    except (UnidentifiedImageError, OSError, ValueError) as err:
        return 0, 0, f"cannot be decoded as an image ({err})"


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
    for image in table.loc[unreadable, "image"]:
        problems.append(Problem(image, "image", image_files[image], info[image][2], "dropped"))
    table = table[~unreadable].copy()
    table["sha256"] = table["path"].map(lambda p: (hashes or {}).get(p, ""))
    labelled = set(truth.table["image"])
    unlabelled = sorted(set(image_files) - labelled)
    for image in unlabelled:
        problems.append(Problem(image, "image", image_files[image], "image file has no ground-truth row", "dropped"))
    counts = {
        "ground_truth_rows": len(ground_truth),
        "metadata_rows": len(metadata),
        "image_files": len(image_files),
        "rows_out": len(table),
        "rows_without_metadata": int(no_metadata.sum()),
        "rows_dropped_bad_label": sum(1 for p in truth.problems if p.action == "dropped"),
        "rows_dropped_missing_image": int(missing_file.sum()),
        "rows_dropped_unreadable_image": int(unreadable.sum()),
        "images_without_ground_truth": len(unlabelled),
        "metadata_values_repaired": sum(1 for p in meta.problems if p.action == "repaired"),
    }
    table = table.sort_values("image").reset_index(drop=True)
    return MergeResult(table[list(MERGED_COLUMNS)], problems, counts)


def render_report(result: MergeResult) -> str:
    """Markdown data report: counts, class distribution, missing values, metadata distributions, every problem."""
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
    lines += ["", f"## Problems ({len(result.problems)})", ""]
    if result.problems:
        lines += ["| image | field | value | reason | action |", "|---|---|---|---|---|"]
        lines += [f"| {p.image} | {p.field} | {p.value} | {p.reason} | {p.action} |" for p in result.problems]
    else:
        lines.append("None found.")
    return "\n".join(lines) + "\n"


def merge_dataset(dataset_dir: Path) -> MergeResult:
    """Read the ingested dataset folder, decode every image once, and merge."""
    from dermpipe.components.ingest import IMAGE_SUFFIXES

    image_root = dataset_dir / config.IMAGE_SUBDIR
    image_files = {
        p.stem: p.relative_to(dataset_dir).as_posix()
        for p in sorted(image_root.iterdir())
        if p.suffix.lower() in IMAGE_SUFFIXES
    }
    manifest_path = dataset_dir / "manifest.json"
    hashes = {}
    if manifest_path.exists():
        hashes = {entry["path"]: entry["sha256"] for entry in json.loads(manifest_path.read_text())}
    info = {image: inspect_image(dataset_dir / rel) for image, rel in image_files.items()}
    return merge_tables(
        read_isic_csv(dataset_dir / config.GROUND_TRUTH_CSV),
        read_isic_csv(dataset_dir / config.METADATA_CSV),
        image_files,
        hashes=hashes,
        image_info=info,
        sources=(str(dataset_dir / config.GROUND_TRUTH_CSV), str(dataset_dir / config.METADATA_CSV)),
    )


def run(raw: Dataset, merged: Dataset, report: Markdown, stats: Metrics) -> None:
    from dermpipe.lineage import annotate, log_metrics

    result = merge_dataset(Path(raw.path))
    if result.table.empty:
        raise ValueError(f"{raw.path}: no usable rows after merging; see the problems listed in the merge report")
    Path(merged.path).parent.mkdir(parents=True, exist_ok=True)
    result.table.to_parquet(merged.path, index=False)
    Path(report.path).write_text(render_report(result))
    annotate(merged, {
        "dataset_uri": raw.uri, "format": "parquet", "rows": len(result.table),
        "class_counts": result.table["label"].value_counts().to_dict(), "problems": len(result.problems),
    })
    log_metrics(stats, result.counts)


@stage_component()
def merge(raw: Input[Dataset], merged: Output[Dataset], report: Output[Markdown], stats: Output[Metrics]):
    """Join ground truth and metadata, check the schema, decode every image once; write the table and report."""
    from dermpipe.components.merge import run

    run(raw, merged, report, stats)
