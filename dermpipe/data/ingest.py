"""ingest: bring a data set in the Kaggle `andrewmvd/isic-2019` layout into the pipeline as a Dataset artifact.

The artifact is a folder in one canonical layout whatever the source:
    ISIC_2019_Training_GroundTruth.csv, ISIC_2019_Training_Metadata.csv,
    ISIC_2019_Training_Input/ISIC_2019_Training_Input/*.jpg, manifest.json (path, size, sha256 of every stored file;
    for downloaded files also the source's checksum: GCS md5/crc32c, ISIC id; for an image stored stripped of its
    metadata, source_sha256 of the file as it came), privacy.json (the metadata found, by kind: image_privacy)

The source's kind (dermpipe.data.sources.registry) brings it into a folder in that layout: remote sources (gs://,
kaggle:, isic:) are mirrored into the download cache (dermpipe.data.download: skip current files, resume partial ones,
verify checksums), a zip is extracted and the demo drawn into a scratch folder; ingest then hard-links that folder's
files into the artifact, except images carrying EXIF, XMP, IPTC or comments: those are written stripped.

IngestParams, the stage's parameters, sit beside its run(); pre-flight imports them, so this module imports neither
kfp nor pandas at its top.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dermpipe import config
from dermpipe.componentkit import param
from dermpipe.data.image_privacy import PRIVACY_FILE, privacy_summary
from dermpipe.data.schema import IMAGE_SUFFIXES
from dermpipe.data.sources import demo, registry
from dermpipe.data.sources.errors import IngestError
from dermpipe.data.sources.kind import Fetched, FetchRequest
from dermpipe.data.sources.spec import check_source, parse_source
from dermpipe.storage import StorageError

if TYPE_CHECKING:
    from kfp.dsl import Dataset, Metrics


@dataclass(frozen=True)
class IngestParams:
    source: str = param("demo", "demo | folder or .zip in the Kaggle ISIC 2019 layout | kaggle:OWNER/DATASET | "
                                "isic:COLLECTION_OR_QUERY | gs://BUCKET/PREFIX")
    source_fingerprint: str = param("", "changes when the source's files do (the ingest task's cache key); "
                                        "`dermpipe run` computes it")
    demo_images: int = param(400, "size of the generated demo data set")
    feedback_log_root: str = param("", "retrain on feedback: the served model's log folder (<serve --log-root>/<model "
                                       "name>, local or gs://); its labelled, logged images join the data set "
                                       "('': none)")
    feedback_retention_days: int = param(365, "feedback images predicted more than this many days ago are skipped "
                                              "(and listed); 0: no limit")
    feedback_fingerprint: str = param("", "changes when new labels arrive (the ingest task's cache key); `dermpipe "
                                          "run` and the retrain trigger compute it")

    def check(self, *, local: bool = True) -> None:
        """What ingest would refuse before reading anything: a missing folder or zip, a malformed kaggle:, isic: or
        gs:// source, missing credentials (`local`: this machine's; a cluster run brings its own), no demo images."""
        if check_source(self.source, local=local).kind == demo.KIND.name and self.demo_images < 1:
            raise ValueError(f"demo_images={self.demo_images}: expected at least 1 image for the demo data set")
        if self.feedback_retention_days < 0:
            raise ValueError(f"feedback_retention_days={self.feedback_retention_days}: expected days >= 0 (0: all)")


@dataclass(frozen=True)
class Layout:
    ground_truth: Path
    metadata: Path
    image_dir: Path


def find_layout(root: Path) -> Layout:
    """Locate the two CSVs and the image folder (nested Kaggle layout, single folder, or images beside the CSVs)."""
    ground_truth = _find_one(root, config.GROUND_TRUTH_CSV)
    metadata = _find_one(root, config.METADATA_CSV)
    candidates = [root / config.IMAGE_SUBDIR, root / Path(config.IMAGE_SUBDIR).name, ground_truth.parent]
    for image_dir in candidates:
        if image_dir.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES for p in image_dir.iterdir()):
            return Layout(ground_truth, metadata, image_dir)
    raise IngestError(
        f"{root}: no images found; expected JPEG files in {config.IMAGE_SUBDIR}/ (the Kaggle layout) "
        f"or in {Path(config.IMAGE_SUBDIR).name}/ or beside {config.GROUND_TRUTH_CSV}"
    )


def _find_one(root: Path, name: str) -> Path:
    matches = sorted(root.rglob(name), key=lambda p: len(p.parts))
    if not matches:
        raise IngestError(f"{root}: {name} not found (looked in the folder and its sub-folders)")
    return matches[0]


def _place(src: Path, dst: Path) -> None:
    """Hard-link when source and artifact share a file system (no copy of 9 GB of images), else copy."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def import_layout(layout: Layout, out_dir: Path, *, quiet: bool = True,
                  ) -> tuple[dict[str, Path], dict[str, dict[str, object]]]:
    """Place the CSVs and images in the canonical layout under out_dir; returns ({placed relative path: source},
    {image's relative path: its manifest hints}). Images are stored without their metadata
    (dermpipe.data.image_privacy): linked when they carry none, written stripped when they do."""
    from tqdm import tqdm

    from dermpipe.data.image_privacy import store_stripped

    images = sorted(p for p in layout.image_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    placed = {config.GROUND_TRUTH_CSV: layout.ground_truth, config.METADATA_CSV: layout.metadata}
    for rel, src in placed.items():
        _place(src, out_dir / rel)
    stored = {}
    for image in tqdm(images, desc="placing", unit="img", disable=quiet):
        rel = f"{config.IMAGE_SUBDIR}/{image.name}"
        placed[rel] = image
        stored[rel] = store_stripped(image, out_dir / rel, _place)
    return placed, stored


def _stored_hints(known: dict[str, dict[str, object]], stored: dict[str, dict[str, object]],
                  ) -> dict[str, dict[str, object]]:
    """The manifest hints: the download's (source_checksum: of the file as downloaded) with the stored file's size
    and sha256 over them; a rewritten image also keeps source_sha256 and the kinds removed."""
    keys = ("size", "sha256", "source_sha256", "metadata_removed")
    return {**known, **{rel: {**known.get(rel, {}), **{k: hint[k] for k in keys if k in hint}}
                        for rel, hint in stored.items()}}


def build_manifest(root: Path, *, quiet: bool = True,
                   known: dict[str, dict[str, object]] | None = None) -> list[dict[str, object]]:
    """path (relative), size and sha256 of every file under root, sorted by path.

    known: {relative path: {"size", "sha256", "source_checksum"}} from a download whose hashes were computed while
    verifying it; such files (same size) are not read again, and their source checksum is kept in the entry.
    """
    from tqdm import tqdm

    from dermpipe.lineage.artifacts import sha256_file

    known = known or {}
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != "manifest.json")
    manifest = []
    for p in tqdm(files, desc="hashing", unit="file", disable=quiet):
        rel, size = p.relative_to(root).as_posix(), p.stat().st_size
        hint = known.get(rel)
        if hint and hint.get("size") == size and hint.get("sha256"):
            manifest.append({"path": rel, "size": size, **{k: v for k, v in hint.items() if k != "size"}})
        else:
            manifest.append({"path": rel, "size": size, "sha256": sha256_file(p)})
    return manifest


def fetch(source: str, out_dir: Path, *, quiet: bool = True, demo_images: int = 400) -> tuple[str, Fetched]:
    """The source's kind and the folder in the Kaggle layout its fetch brought it into (for remote sources: the
    download cache, found up to date or completed); the kind's own errors are raised as IngestError."""
    parsed = parse_source(source)
    request = FetchRequest(source, out_dir.parent / (out_dir.name + ".staging"), quiet, demo_images)
    shutil.rmtree(request.scratch, ignore_errors=True)  # left by an interrupted run: never mixed into this one
    try:
        return parsed.kind, registry.named(parsed.kind).fetch(parsed.location, request)
    except IngestError:
        raise
    except (ValueError, StorageError) as err:  # KaggleSourceError, IsicSourceError, GcsSourceError, no credentials
        raise IngestError(str(err)) from err


def _known_hashes(placed: dict[str, Path]) -> dict[str, dict[str, object]]:
    """Hashes recorded by the download cache for the files placed in the artifact (so they are not read twice)."""
    from dermpipe.data.download import STATE_FILE, load_state

    known: dict[str, dict[str, object]] = {}
    states: dict[Path, dict[str, dict[str, object]]] = {}
    for rel, src in placed.items():
        root = next((parent for parent in src.parents if (parent / STATE_FILE).is_file()), None)
        if root is None:
            continue
        state = states.setdefault(root, load_state(root))
        entry = state.get(src.relative_to(root).as_posix())
        if entry:
            known[rel] = {"size": entry["size"], "sha256": entry["sha256"], "source_checksum": entry["checksum"]}
    return known


def record_licences(kind: str, location: str, out_dir: Path) -> dict[str, object]:
    """Give a data set known as a whole (dermpipe.data.licences.KNOWN_DATASETS) its licence and attribution in every
    metadata row that has none; count the rows whose licence stays unknown. The metadata CSV placed in out_dir is
    rewritten as a new file (never through the hard link into the source or the download cache)."""
    import pandas as pd

    from dermpipe.data import licences

    path = out_dir / config.METADATA_CSV
    try:
        metadata = pd.read_csv(path, dtype=str, keep_default_na=False)  # every value written back as it was read
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        return {"licence_source": "unread: the metadata CSV does not parse (merge names the problem)"}
    if "image" not in metadata:
        return {"licence_source": "unread: the metadata CSV has no image column (merge names the problem)"}
    known, filled = licences.dataset_licence(kind, location), 0
    if known is not None:
        metadata, filled = licences.fill(metadata, known)
        path.unlink()
        metadata.to_csv(path, index=False)
    counts = licences.metrics(licences.licence_columns(metadata))
    return {"licence_source": f"{known.copyright_license} (the data set's licence)" if known else "metadata CSV",
            "licence_rows_filled": filled, "licence_unknown": counts["licence_unknown"],
            "licence_non_commercial": counts["licence_non_commercial"]}


def ingest_source(source: str, out_dir: Path, *, demo_images: int = 400, quiet: bool = True,
                  feedback_log_root: str = "", feedback_retention_days: int = 365) -> dict[str, object]:
    """Materialise `source` as the canonical layout in out_dir (plus, with feedback_log_root, the labelled images fed
    back to the served model: dermpipe.data.feedback) and write manifest.json; returns the summary."""
    kind, fetched = fetch(source, out_dir, quiet=quiet, demo_images=demo_images)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        placed, stored = import_layout(find_layout(fetched.folder), out_dir, quiet=quiet)
    finally:
        if fetched.scratch:  # the artifact holds hard links (or copies) of its files now
            shutil.rmtree(fetched.folder, ignore_errors=True)
    known = _stored_hints(_known_hashes(placed) if fetched.download_cache else {}, stored)
    privacy = privacy_summary(stored)
    (out_dir / PRIVACY_FILE).write_text(json.dumps(privacy, indent=1))
    transfer = {**fetched.transfer, **{f"metadata_{k}": v for k, v in privacy.items() if isinstance(v, int)},
                **record_licences(kind, parse_source(source).location, out_dir)}
    if transfer.get("licence_rows_filled"):  # rewritten: the download's hash no longer describes it
        known.pop(config.METADATA_CSV, None)
    if feedback_log_root:
        from dermpipe.data.feedback import add_feedback

        transfer = {**transfer, **add_feedback(out_dir, feedback_log_root, feedback_retention_days)}
    manifest = build_manifest(out_dir, quiet=quiet, known=known)
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1))
    n_images = sum(1 for f in manifest if str(f["path"]).lower().endswith(IMAGE_SUFFIXES))
    from dermpipe.lineage.artifacts import sha256_json

    return {
        "source": source,
        "source_kind": kind,
        "n_images": n_images,
        "n_bytes": sum(int(f["size"]) for f in manifest),
        "manifest_sha256": sha256_json(manifest),
        **transfer,
    }


def run(source: str, dataset: Dataset, stats: Metrics, demo_images: int, *, feedback_log_root: str = "",
        feedback_retention_days: int = 365) -> None:
    """Component body: ingest, then describe the Dataset for the lineage view."""
    from dermpipe.lineage.artifacts import annotate, log_metrics

    quiet = os.environ.get("DERMPIPE_QUIET", "") not in ("", "0")  # progress bars in task logs unless quiet
    summary = ingest_source(source, Path(dataset.path), demo_images=demo_images, quiet=quiet,
                            feedback_log_root=feedback_log_root, feedback_retention_days=feedback_retention_days)
    annotate(dataset, {**summary, "layout": "kaggle-isic-2019"})
    log_metrics(stats, {"n_images": summary["n_images"], "n_bytes": summary["n_bytes"],
                        **{k: v for k, v in summary.items()
                           if k.startswith(("download_", "feedback_", "licence_", "metadata_"))
                           and k != "licence_source"}})
