"""Peak memory of the data stages (ingest, merge + split, prepare) on the real sample kit and on a 10x larger set.

Each stage runs in its own fresh Python process, which reports its own peak RSS (resource.getrusage). Streaming
stages should show (almost) the same peak at 1x and 10x: the ratio column is the claim, measured side by side.
The 10x set is the sample kit's 475 real images, each in 10 distinct variants (rotations/flips/JPEG quality), so
every file has its own content (no duplicate shortcut) and the image sizes stay real.

    .venv/bin/python benchmarks/data_memory.py            # about 2-4 minutes on 2 cores
    .venv/bin/python benchmarks/data_memory.py --scale 4  # quicker
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "isic2019-sample"
IMAGE_SUBDIR = "ISIC_2019_Training_Input/ISIC_2019_Training_Input"


def make_scaled_kit(scale: int, out: Path) -> Path:
    """The sample kit with every image (and its CSV rows) in `scale` distinct variants."""
    import pandas as pd
    from PIL import Image

    images = out / IMAGE_SUBDIR
    images.mkdir(parents=True)
    truth = pd.read_csv(SAMPLE / "ISIC_2019_Training_GroundTruth.csv")
    meta = pd.read_csv(SAMPLE / "ISIC_2019_Training_Metadata.csv")
    truths, metas = [], []
    for k in range(scale):
        suffix = f"_v{k}"
        for path in sorted((SAMPLE / IMAGE_SUBDIR).glob("*.jpg")):
            with Image.open(path) as im:
                variant = im.transpose(k % 7) if k % 8 else im.copy()
                variant.save(images / f"{path.stem}{suffix}.jpg", "JPEG", quality=95 - k)
        truths.append(truth.assign(image=truth["image"] + suffix))
        lesions = meta["lesion_id"].map(lambda v, s=suffix: v if pd.isna(v) else f"{v}{s}")
        metas.append(meta.assign(image=meta["image"] + suffix, lesion_id=lesions))
    pd.concat(truths).to_csv(out / "ISIC_2019_Training_GroundTruth.csv", index=False)
    pd.concat(metas).to_csv(out / "ISIC_2019_Training_Metadata.csv", index=False)
    return out


def run_stage(stage: str, source: Path, work: Path, image_size: int) -> dict[str, float]:
    """Run one stage in this (fresh) process and return its time and this process's peak RSS."""
    import pandas as pd

    start = time.perf_counter()
    if stage == "ingest":
        from dermpipe.data.ingest import ingest_source

        ingest_source(str(source), work / "raw")
    elif stage == "merge+split":
        from dermpipe.data.merge import merge_dataset
        from dermpipe.data.split import split_table

        splits = split_table(merge_dataset(work / "raw").table, seed=42)
        for name in ("train", "val", "test"):
            getattr(splits, name).to_parquet(work / f"{name}.parquet", index=False)
    elif stage == "prepare":
        from dermpipe.data.prepare import prepare_shards

        tables = {name: pd.read_parquet(work / f"{name}.parquet") for name in ("train", "val", "test")}
        prepare_shards(work / "raw", tables, work / "shards", image_size=image_size, shard_bytes=100_000_000)
    else:
        raise SystemExit(f"unknown stage {stage}")
    return {"seconds": time.perf_counter() - start,
            "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def measure(source: Path, work: Path, image_size: int) -> dict[str, dict[str, float]]:
    results = {}
    for stage in ("ingest", "merge+split", "prepare"):
        out = subprocess.run([sys.executable, __file__, "--stage", stage, "--source", str(source), "--work", str(work),
                              "--image-size", str(image_size)], check=True, capture_output=True, text=True)
        results[stage] = json.loads(out.stdout.strip().splitlines()[-1])
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--stage")
    parser.add_argument("--source", type=Path)
    parser.add_argument("--work", type=Path)
    args = parser.parse_args()
    if args.stage:
        print(json.dumps(run_stage(args.stage, args.source, args.work, args.image_size)))
        return
    tmp = Path(tempfile.mkdtemp(prefix="dermpipe-mem-"))
    try:
        kits = {"1x": SAMPLE, f"{args.scale}x": make_scaled_kit(args.scale, tmp / "kit")}
        n_images = {"1x": 475, f"{args.scale}x": 475 * args.scale}
        results = {}
        for name, kit in kits.items():
            (tmp / name).mkdir()
            results[name] = measure(kit, tmp / name, args.image_size)
        big = f"{args.scale}x"
        print(f"peak RSS per stage (fresh process each), image_size {args.image_size}")
        print(f"{'stage':<13} {'1x: 475 images':>16} {big + ': ' + str(n_images[big]) + ' images':>18} "
              f"{'ratio':>7} {'seconds 1x':>11} {'seconds ' + big:>12}")
        for stage in results["1x"]:
            small, large = results["1x"][stage], results[big][stage]
            ratio = large["max_rss_mb"] / small["max_rss_mb"]
            print(f"{stage:<13} {small['max_rss_mb']:>13.0f} MB {large['max_rss_mb']:>15.0f} MB {ratio:>7.2f} "
                  f"{small['seconds']:>11.1f} {large['seconds']:>12.1f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
