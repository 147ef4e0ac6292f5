"""prepare: decode each image once, centre-crop and resize it to the training resolution, write TFRecord shards.

Training then reads small JPEGs at its own resolution (dermpipe.data.shards.shard_records) instead of decoding the
full-size originals (up to 6000x4000) every epoch. Streaming: images are read, resized and written a chunk at a time,
so memory does not depend on the number of images. The record contract and the resize policy are in
dermpipe/data/shards.py. PrepareParams sit beside run(); pre-flight imports them, so pandas and kfp are imported
where they are used.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dermpipe import config
from dermpipe.componentkit import param
from dermpipe.data.shards import check_shard_size

if TYPE_CHECKING:
    import pandas as pd
    from kfp.dsl import Dataset, Metrics

CHUNK = 64  # images in flight at once (bounded memory, parallel decode)


def check_image_size(image_size: int) -> None:
    """Below 8 px no backbone has a feature map left; a typo (e.g. 2 for 224) is the usual cause."""
    if image_size < 8:
        raise ValueError(f"image_size={image_size}: expected the training resolution in pixels (e.g. 224)")


@dataclass(frozen=True)
class PrepareParams:
    image_size: int = param(224, "side of the centre-cropped square images in the shards (the training resolution)")
    shard_size_mb: float = param(150.0, "target size of one TFRecord shard in MB")
    seed: int = param(42, "seed of the shards' shuffle (the pipeline passes split_seed)")

    def check(self) -> None:
        check_image_size(self.image_size)
        check_shard_size(self.shard_size_mb * 1e6)


def prepare_shards(dataset_dir: Path, tables: dict[str, pd.DataFrame], out_dir: Path, *, image_size: int,
                   shard_bytes: int, seed: int = 42, workers: int | None = None,
                   quiet: bool = True) -> dict[str, object]:
    """Write every split's rows as shards under out_dir plus shards.json; returns the manifest.

    Records are written in a seeded random order within each split, so every shard mixes the classes (training can
    interleave shards without long single-class runs). An image that fails to decode is skipped and listed.
    """
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

    from dermpipe.componentkit import CountProgress
    from dermpipe.data.shards import (
        MANIFEST,
        ShardWriter,
        centre_crop_resize,
        encode_example,
        iter_chunks,
        manifest_dict,
    )

    check_image_size(image_size)
    failed: list[dict[str, str]] = []
    total = sum(len(t) for t in tables.values())
    counted = CountProgress("preparing", total)

    def load(row: dict) -> tuple[dict, bytes | None, int, int, str]:
        try:
            png, width, height = centre_crop_resize((dataset_dir / row["path"]).read_bytes(), image_size)
            return row, png, width, height, ""
        except (OSError, ValueError, SyntaxError) as err:
            return row, None, 0, 0, f"{type(err).__name__}: {err}"

    with ShardWriter(out_dir, shard_bytes) as writer, ThreadPoolExecutor(workers or min(4, os.cpu_count() or 1)) \
            as pool, tqdm(total=total, desc="preparing", unit="img", disable=quiet) as progress:
        for split, table in tables.items():
            order = np.random.default_rng(seed).permutation(len(table))
            rows = table.iloc[order].to_dict("records")
            for chunk in iter_chunks(rows, CHUNK):
                for row, png, width, height, error in pool.map(load, chunk):
                    progress.update(1)
                    counted.update()
                    if png is None:
                        failed.append({"image": row["image"], "path": row["path"], "split": split, "reason": error})
                        continue
                    writer.write(split, row["label"], encode_example(
                        image=png, label=int(row["label_index"]), image_id=row["image"], split=split,
                        age_approx=row.get("age_approx"), sex=row.get("sex"),
                        anatom_site_general=row.get("anatom_site_general"), orig_height=height, orig_width=width))
    params = {"image_size": image_size, "shard_bytes": shard_bytes, "seed": seed}
    manifest = manifest_dict(writer.shards, image_size=image_size, failed=failed, params=params)
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest


def prepare_metrics(manifest: dict) -> dict[str, int]:
    values: dict[str, int] = {"failed_images": len(manifest["failed"]), "shards": len(manifest["shards"])}
    for split, counts in manifest["counts"].items():
        values[f"{split}_records"] = counts["records"]
        values[f"{split}_shards"] = counts["shards"]
        values[f"{split}_bytes"] = counts["bytes"]
    return values


def run(raw: Dataset, train_split: Dataset, val_split: Dataset, test_split: Dataset, shards: Dataset,
        stats: Metrics, image_size: int, shard_size_mb: float, seed: int) -> None:
    import pandas as pd

    from dermpipe.data.shards import MANIFEST
    from dermpipe.lineage.artifacts import annotate, log_metrics, sha256_json

    tables = {name: pd.read_parquet(artifact.path)
              for name, artifact in (("train", train_split), ("val", val_split), ("test", test_split))}
    out_dir = Path(shards.path)
    quiet = os.environ.get("DERMPIPE_QUIET", "") not in ("", "0")
    manifest = prepare_shards(Path(raw.path), tables, out_dir, image_size=image_size,
                              shard_bytes=int(shard_size_mb * 1e6), seed=seed, quiet=quiet)
    annotate(shards, {
        "format": "tfrecord", "manifest": MANIFEST, "image_size": image_size, "resize": manifest["resize"],
        "image_encoding": manifest["image_encoding"], "dataset_uri": raw.uri, "manifest_sha256": sha256_json(manifest),
        "counts": {split: c["records"] for split, c in manifest["counts"].items()},
        "class_counts": {split: c["class_counts"] for split, c in manifest["counts"].items()},
        "failed_images": len(manifest["failed"]), "shard_size_mb": shard_size_mb, "classes": list(config.CLASSES),
    })
    log_metrics(stats, prepare_metrics(manifest))
