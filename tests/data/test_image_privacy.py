"""Health data stripped from stored images (dermpipe.data.image_privacy), checked with readers that are not ours:
exifread (an independent EXIF parser), Pillow's own EXIF/XMP/comment readers, TensorFlow's decoder (the model's)."""

import io
import json
import shutil
from pathlib import Path

import exifread
import numpy as np
import pytest
from PIL import Image, ImageOps
from private_images import clean_jpeg, leaked, lesion_pixels, private_jpeg, private_png

from dermpipe import config
from dermpipe.data.image_privacy import (
    MetadataError,
    encode_png,
    metadata_kinds,
    privacy_section,
    strip_metadata,
    tally,
)

ALL_JPEG_KINDS = ("gps", "serial", "owner", "capture_time", "comment", "other_exif", "xmp", "iptc")


def exif_tags(data: bytes) -> dict:
    return exifread.process_file(io.BytesIO(data), details=True)


def pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def test_the_fixture_carries_what_an_independent_reader_finds():
    tags = exif_tags(private_jpeg())
    assert "GPS GPSLatitude" in tags and "EXIF BodySerialNumber" in tags and "Image Artist" in tags
    assert "EXIF UserComment" in tags and "EXIF DateTimeOriginal" in tags


def test_a_jpeg_with_gps_serial_comment_xmp_and_iptc_is_rewritten_losslessly():
    original = private_jpeg()
    assert metadata_kinds(original) == ALL_JPEG_KINDS
    stripped = strip_metadata(original)
    assert stripped.kinds == ALL_JPEG_KINDS and stripped.method == "segments"
    assert leaked(stripped.data) == [] and exif_tags(stripped.data) == {}
    with Image.open(io.BytesIO(stripped.data)) as image:
        assert not {"exif", "xmp", "comment", "photoshop"} & set(image.info)
        assert len(image.getexif()) == 0 and image.size == (160, 120)
    np.testing.assert_array_equal(pixels(stripped.data), pixels(original))  # not one pixel changed
    assert stripped.data == clean_jpeg()  # the same encoder's output without the metadata segments, byte for byte
    assert metadata_kinds(stripped.data) == () and strip_metadata(stripped.data).data == stripped.data


def test_the_model_decoder_sees_the_same_pixels():
    import tensorflow as tf

    from dermpipe.data.images import decode_resize_bytes

    original = private_jpeg()
    clean = strip_metadata(original).data
    for size in (224, 64):  # a full and a DCT-scaled decode
        np.testing.assert_array_equal(decode_resize_bytes(tf.constant(original), size).numpy(),
                                      decode_resize_bytes(tf.constant(clean), size).numpy())


def test_a_clean_jpeg_is_returned_as_the_same_bytes():
    data = clean_jpeg()
    assert strip_metadata(data).data is data and strip_metadata(data).kinds == ()


def test_data_appended_after_the_image_goes_too():
    original = private_jpeg(appended=True, xmp=False, iptc=False)
    stripped = strip_metadata(original)
    assert "appended_data" in stripped.kinds and stripped.data == clean_jpeg()


def test_a_vendor_trailer_after_a_clean_header_goes_too():
    """A trailer such as Samsung's SEFT (which can hold the capture's details) does not end in EOI: the scans are
    walked to find where the image ends."""
    original = clean_jpeg() + b"SEFH\x00\x00Jane Doe 1962-03-14\x00SEFT"
    stripped = strip_metadata(original)
    assert stripped.kinds == ("appended_data",) and stripped.data == clean_jpeg()


def test_a_progressive_jpeg_with_a_comment_keeps_every_scan():
    buffer = io.BytesIO()
    Image.fromarray(lesion_pixels((640, 480))).save(buffer, "JPEG", progressive=True, comment=b"Jane Doe")
    stripped = strip_metadata(buffer.getvalue())
    assert stripped.kinds == ("comment",) and b"Jane Doe" not in stripped.data
    np.testing.assert_array_equal(pixels(stripped.data), pixels(buffer.getvalue()))


def test_an_icc_profile_is_kept():
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    buffer = io.BytesIO()
    Image.fromarray(lesion_pixels()).save(buffer, "JPEG", icc_profile=icc, comment=b"Jane Doe")
    with Image.open(io.BytesIO(strip_metadata(buffer.getvalue()).data)) as image:
        assert image.info["icc_profile"] == icc and "comment" not in image.info


def test_an_exif_orientation_is_applied_before_stripping():
    original = private_jpeg(orientation=6)  # "rotate 90 CW to display": a phone held upright
    stripped = strip_metadata(original)
    assert stripped.method == "reencoded" and leaked(stripped.data) == [] and exif_tags(stripped.data) == {}
    with Image.open(io.BytesIO(original)) as image:
        upright = np.asarray(ImageOps.exif_transpose(image).convert("RGB")).astype(int)
    stored = pixels(stripped.data).astype(int)
    assert stored.shape == upright.shape == (160, 120, 3)  # width and height swapped
    assert np.abs(stored - upright).mean() < 1.5  # quality 95: within JPEG's rounding


def test_a_png_with_text_xmp_and_exif_is_reencoded_losslessly():
    original = private_png()
    stripped = strip_metadata(original)
    assert {"gps", "serial", "comment", "xmp"} <= set(stripped.kinds) and stripped.method == "reencoded"
    assert leaked(stripped.data) == []
    with Image.open(io.BytesIO(stripped.data)) as image:
        assert image.format == "PNG" and not image.text and len(image.getexif()) == 0
    np.testing.assert_array_equal(pixels(stripped.data), pixels(original))


def test_an_unreadable_jpeg_header_is_named():
    with pytest.raises(MetadataError, match="no JPEG marker at byte 2"):
        strip_metadata(b"\xff\xd8garbage")
    with pytest.raises(MetadataError, match="not an image PIL can read"):
        strip_metadata(b"plain text")


def test_overlays_hold_pixels_only():
    png = encode_png(lesion_pixels())
    assert metadata_kinds(png) == ()
    with Image.open(io.BytesIO(png)) as image:
        assert set(image.info) <= {"dpi"} and not image.text


def test_tally_counts_images_per_kind():
    assert tally([("gps", "comment"), (), ("comment",)]) == {"images_with_metadata": 2, "gps": 1, "comment": 2}


def _folder_with_private_images(isic_sample: Path, tmp_path: Path, n: int = 12, n_private: int = 3) -> Path:
    """n real ISIC images in the Kaggle layout; the first n_private re-saved as a clinic camera would write them."""
    source = tmp_path / "clinic"
    (source / config.IMAGE_SUBDIR).mkdir(parents=True)
    images = sorted((isic_sample / config.IMAGE_SUBDIR).glob("*.jpg"))[:n]
    for i, image in enumerate(images):
        target = source / config.IMAGE_SUBDIR / image.name
        if i < n_private:
            target.write_bytes(private_jpeg(pixels(image.read_bytes())))
        else:
            shutil.copyfile(image, target)
    names = {p.stem for p in images}
    for csv in (config.GROUND_TRUTH_CSV, config.METADATA_CSV):
        text = (isic_sample / csv).read_text().splitlines()
        (source / csv).write_text("\n".join([text[0], *(t for t in text[1:] if t.split(",")[0] in names)]) + "\n")
    return source


def test_a_folder_ingest_stores_images_stripped_and_counts_them(isic_sample, tmp_path):
    from kfp.dsl import Dataset, Markdown, Metrics

    from dermpipe.data.ingest import ingest_source
    from dermpipe.data.merge import run as merge
    from dermpipe.lineage.artifacts import sha256_file

    source = _folder_with_private_images(isic_sample, tmp_path)
    before = {p.name: p.read_bytes() for p in (source / config.IMAGE_SUBDIR).iterdir()}
    out = tmp_path / "raw"
    summary = ingest_source(str(source), out)
    assert {p.name: p.read_bytes() for p in (source / config.IMAGE_SUBDIR).iterdir()} == before  # source intact
    assert summary["metadata_images_scanned"] == 12 and summary["metadata_images_with_metadata"] == 3
    assert summary["metadata_gps"] == summary["metadata_serial"] == summary["metadata_comment"] == 3
    stored = sorted((out / config.IMAGE_SUBDIR).iterdir())
    assert all(leaked(p.read_bytes()) == [] and exif_tags(p.read_bytes()) == {} for p in stored)
    manifest = {e["path"]: e for e in json.loads((out / "manifest.json").read_text())}
    private, public = stored[0], stored[5]
    entry = manifest[f"{config.IMAGE_SUBDIR}/{private.name}"]
    assert entry["sha256"] == sha256_file(private)  # of the stored, stripped file
    assert entry["source_sha256"] == sha256_file(source / config.IMAGE_SUBDIR / private.name)
    assert entry["metadata_removed"] == list(ALL_JPEG_KINDS)
    assert public.stat().st_ino == (source / config.IMAGE_SUBDIR / public.name).stat().st_ino  # still a hard link
    assert "source_sha256" not in manifest[f"{config.IMAGE_SUBDIR}/{public.name}"]
    privacy = json.loads((out / "privacy.json").read_text())
    assert [e["path"].rsplit("/", 1)[1] for e in privacy["images"]] == [p.name for p in stored[:3]]
    assert not any(secret in (out / "privacy.json").read_bytes() for secret in (b"Jane", b"SN-4F2A"))

    artifacts = {name: cls(name=name, uri=str(tmp_path / "merge" / name)) for name, cls in
                 (("merged", Dataset), ("report", Markdown), ("stats", Metrics))}
    merge(Dataset(name="raw", uri=str(out)), artifacts["merged"], artifacts["report"], artifacts["stats"])
    report = (tmp_path / "merge" / "report").read_text()
    assert "## Image metadata stripped at ingest" in report and "3 of 12 images carried metadata" in report
    assert "| gps | 3 |" in report and private.name in report and "Jane" not in report
    assert artifacts["stats"].metadata["metadata_images_with_metadata"] == 3
    assert privacy_section(tmp_path) == ""  # a data set ingested before privacy.json existed: no section


def test_feedback_rows_added_to_a_data_set_are_stripped(isic_sample, tmp_path):
    """Images logged by a server that did not strip them (before this release) lose their metadata on the way in."""
    import datetime as dt

    from dermpipe.data.ingest import ingest_source
    from dermpipe.serving.labels import Label, append_labels
    from dermpipe.serving.prediction_log import PredictionLog, log_line

    source = _folder_with_private_images(isic_sample, tmp_path, n=6, n_private=0)
    predlog = PredictionLog(str(tmp_path / "logs"), "derm", log_images=True)
    stamp = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).isoformat(timespec="milliseconds")
    for rid, data in (("old", private_jpeg()), ("new", clean_jpeg())):
        line = log_line(timestamp=stamp, request_id=rid, model_name="derm", model_version=1, classes=config.CLASSES,
                        probabilities=[1, 0, 0, 0, 0, 0, 0, 0], stats={}, metadata={}, embedding_summary=None)
        line["image_uri"] = predlog.save_image(stamp, f"{rid}.jpg", data)
        predlog.append([line])
    predlog.flush()
    append_labels(str(tmp_path / "logs"), "derm", [Label(r, "MEL", "biopsy", "2026-12-01") for r in ("old", "new")])
    out = tmp_path / "raw"
    summary = ingest_source(str(source), out, feedback_log_root=str(tmp_path / "logs" / "derm"))
    assert summary["feedback_rows_added"] == 2 and summary["feedback_images_with_metadata"] == 1
    added = (out / config.IMAGE_SUBDIR / "FB_old.jpg").read_bytes()
    assert leaked(added) == [] and exif_tags(added) == {} and added == clean_jpeg()
    rows = {r["image"]: r["metadata_removed"] for r in json.loads((out / "feedback.json").read_text())["rows"]}
    assert rows == {"FB_old": list(ALL_JPEG_KINDS), "FB_new": []}


def test_a_truncated_sideways_jpeg_is_named_not_crashed_on():
    data = private_jpeg(orientation=6)
    with pytest.raises(MetadataError, match="pixels could not be decoded to re-encode it"):
        strip_metadata(data[: len(data) // 2])
