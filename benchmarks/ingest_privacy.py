"""What stripping image metadata costs ingest: a folder ingest of a real kit with dermpipe's privacy pass (every image
read once, scanned for EXIF/XMP/IPTC/comments, linked when clean, written stripped when not, its sha256 taken from the
same read) against the ingest it replaced (the same ingest_source with the privacy pass swapped for a plain link, so
the manifest hashes every file, as it did), side by side in one run, on the kit as published (no metadata) and with
a share of its images given a clinic camera's EXIF. Then the server's per-request cost: strip_metadata on a clean
and a metadata-carrying JPEG against the model's decode.

    .venv/bin/python benchmarks/ingest_privacy.py [--kit ham10000] [--with-metadata 0.1] [--repeats 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from dermpipe import config
from dermpipe.data.image_privacy import strip_metadata
from dermpipe.data.ingest import IngestError, find_layout, ingest_source

KITS = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def camera_exif() -> bytes:
    """An APP1 Exif segment as a clinic camera writes one: GPS, device serial, capture time, a user comment."""
    from PIL import Image

    exif = Image.Exif()
    exif[0x0132] = "2026:11:24 09:41:07"
    exif.get_ifd(0x8825).update({1: "N", 2: (48.0, 51.0, 24.0), 3: "E", 4: (2.0, 21.0, 3.0)})
    exif.get_ifd(0x8769).update({0xA431: "SN-4F2A-77311", 0x9286: b"ASCII\x00\x00\x00patient Jane Doe"})
    payload = exif.tobytes()
    return b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload


def kit_images(kit: Path, folder: Path) -> list[Path]:
    """The kit's images, its two ISIC 2019 CSVs copied into folder; a kit without them (isic2020-sample: larger
    512x512 images) gets CSVs naming every image (ingest reads no label; merge, which would, is not timed)."""
    try:
        layout = find_layout(kit)
    except IngestError:
        files = sorted(kit.rglob("*.jpg"))
        columns = ",".join(config.GROUND_TRUTH_COLUMNS[1:])
        (folder / config.GROUND_TRUTH_CSV).write_text(f"image,{columns}\n" + "".join(
            f"{p.stem},0,1{',0' * (len(config.GROUND_TRUTH_COLUMNS) - 3)}\n" for p in files))
        (folder / config.METADATA_CSV).write_text("image,age_approx,anatom_site_general,lesion_id,sex\n" + "".join(
            f"{p.stem},,,,\n" for p in files))
        return files
    shutil.copy(layout.ground_truth, folder / config.GROUND_TRUTH_CSV)
    shutil.copy(layout.metadata, folder / config.METADATA_CSV)
    return sorted(layout.image_dir.glob("*.jpg"))


def source_copy(kit: Path, folder: Path, share: float) -> int:
    """The kit copied into folder (so links stay on one file system), `share` of its images given camera EXIF."""
    images = folder / config.IMAGE_SUBDIR
    images.mkdir(parents=True)
    files = kit_images(kit, folder)
    segment, every = camera_exif(), round(1 / share) if share else 0
    for i, image in enumerate(files):
        data = image.read_bytes()
        (images / image.name).write_bytes(data[:2] + segment + data[2:] if every and i % every == 0 else data)
    return len(files)


def baseline_ingest(source: Path, out: Path) -> None:
    """The ingest before the privacy pass: the same ingest_source with every image only linked (no read, no scan),
    so the manifest hashes every file, as it did."""
    import dermpipe.data.image_privacy as privacy

    real = privacy.store_stripped
    privacy.store_stripped = lambda src, dst, place: place(src, dst) or {}
    try:
        ingest_source(str(source), out)
    finally:
        privacy.store_stripped = real


def privacy_ingest(source: Path, out: Path) -> None:
    ingest_source(str(source), out)


def timed(function, source: Path, scratch: Path, repeats: int) -> float:
    times = []
    for i in range(repeats):
        out = scratch / f"out-{function.__name__}-{i}"
        start = time.perf_counter()
        function(source, out)
        times.append(time.perf_counter() - start)
        shutil.rmtree(out)
    return statistics.median(times)


def per_request(kit: Path) -> None:
    """The server's added cost per image: strip_metadata against the model's decode of the same bytes."""

    from dermpipe.data.images import bytes_decoder

    data = sorted(kit.rglob("*.jpg"))[0].read_bytes()
    tagged = data[:2] + camera_exif() + data[2:]
    decode = bytes_decoder(224)
    decode(data)  # traced once
    for name, payload, run in (("strip, clean JPEG", data, lambda d: strip_metadata(d)),
                               ("strip, JPEG with EXIF", tagged, lambda d: strip_metadata(d)),
                               ("model decode (224 px)", data, lambda d: decode(d).numpy())):
        start, n = time.perf_counter(), 300
        for _ in range(n):
            run(payload)
        print(f"  {name:24s} {(time.perf_counter() - start) / n * 1e6:8.0f} us/image ({len(payload)} bytes)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kit", default="ham10000", help="a kit folder of ../shared/data")
    parser.add_argument("--with-metadata", type=float, default=0.1, help="share of images given camera EXIF")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    kit = KITS / args.kit
    with tempfile.TemporaryDirectory(dir=Path.home()) as scratch:
        for share in (0.0, args.with_metadata):
            source = Path(scratch) / f"source-{share}"
            n = source_copy(kit, source, share)
            for function in (baseline_ingest, privacy_ingest):  # warm the page cache
                function(source, Path(scratch) / "warm")
                shutil.rmtree(Path(scratch) / "warm")
            t_base = timed(baseline_ingest, source, Path(scratch), args.repeats)
            t_ours = timed(privacy_ingest, source, Path(scratch), args.repeats)
            print(f"{args.kit}: {n} images, {share:.0%} with camera EXIF: dermpipe ingest {t_ours:.2f} s "
                  f"({n / t_ours:.0f} img/s), without it (link, then hash) {t_base:.2f} s ({n / t_base:.0f} img/s), "
                  f"ratio {t_ours / t_base:.2f}")
            shutil.rmtree(source)
    per_request(kit)


if __name__ == "__main__":
    main()
