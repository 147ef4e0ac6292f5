"""Health data out of the images dermpipe stores or serves back: EXIF (GPS position, device serial, owner, capture
time, comments, maker notes), XMP, IPTC, JPEG comments and anything appended after the image.

Detection reports kinds only (never a value), so logs and reports can say what was removed without repeating it.
Stripping costs as little as the image allows:
- a JPEG without metadata is returned as it is (same bytes, same checksum); only its header segments are read
  when it ends with its end-of-image marker (8 us an image, whatever its size);
- a JPEG with metadata is rewritten segment by segment, losslessly: the metadata segments and any bytes after the
  end-of-image marker are dropped, every other byte (quantisation and Huffman tables, the scans) is kept, so every
  decoder gives the same pixels as before (the model's inputs are unchanged);
- a JPEG whose EXIF orientation is not 1 is decoded, turned upright with PIL's ImageOps.exif_transpose and re-encoded
  (quality 95, the original chroma subsampling and ICC profile): a lossless transpose needs libjpeg's jpegtran, which
  Pillow does not offer;
- a PNG, GIF or BMP carrying metadata is re-encoded in its own format (PNG and BMP losslessly).
The colour profile (JPEG APP2 ICC_PROFILE, PNG iCCP), JFIF (APP0) and Adobe (APP14, which tells decoders the colour
transform) are kept: they describe the pixels, not the patient.
"""

from __future__ import annotations

import io
import re
import struct
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

# The kinds reported, in report order. The first group comes from EXIF tags; the rest from where the data sits.
KINDS = ("gps", "serial", "owner", "capture_time", "comment", "maker_note", "other_exif", "xmp", "iptc",
         "other_segment", "appended_data")

_GPS_IFD, _EXIF_IFD = 0x8825, 0x8769
_TAG_KINDS = {
    # device identifiers: BodySerialNumber, LensSerialNumber, ImageUniqueID
    0xA431: "serial", 0xA435: "serial", 0xA420: "serial",
    # people: Artist, CameraOwnerName, XPAuthor, Copyright
    0x013B: "owner", 0xA430: "owner", 0x9C9D: "owner", 0x8298: "owner",
    # DateTime, DateTimeOriginal, DateTimeDigitized, their sub-seconds and time-zone offsets
    0x0132: "capture_time", 0x9003: "capture_time", 0x9004: "capture_time", 0x9290: "capture_time",
    0x9291: "capture_time", 0x9292: "capture_time", 0x9010: "capture_time", 0x9011: "capture_time",
    0x9012: "capture_time",
    # ImageDescription, UserComment, XPComment, XPTitle, XPSubject, XPKeywords
    0x010E: "comment", 0x9286: "comment", 0x9C9C: "comment", 0x9C9B: "comment", 0x9C9F: "comment",
    0x9C9E: "comment",
    0x927C: "maker_note",
}
_ORIENTATION = 0x0112
_STRUCTURE_TAGS = {_GPS_IFD, _EXIF_IFD, 0xA005, _ORIENTATION}  # IFD pointers and the orientation: no data

_XMP_PREFIXES = (b"http://ns.adobe.com/xap/1.0/\x00", b"http://ns.adobe.com/xmp/extension/\x00")
_SOS, _EOI, _COM = 0xDA, 0xD9, 0xFE
_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # TEM and RST0-7 carry no length
_MARKER = re.compile(rb"\xff([^\x00\xd0-\xd7\xff])")  # a marker: not stuffing, a restart or fill (a literal
# first byte: the regex engine searches it at C speed; "\xff+" would make it try every byte)


class MetadataError(ValueError):
    """The image's structure could not be read to find its metadata."""


@dataclass(frozen=True)
class Stripped:
    """An image without its metadata: the bytes to store, the kinds removed, and how ("" when nothing was there,
    "segments" for the lossless JPEG rewrite, "reencoded" otherwise)."""

    data: bytes
    kinds: tuple[str, ...] = ()
    method: str = ""


def exif_kinds(exif: Mapping[int, object] | None) -> set[str]:
    """The kinds of a PIL Image.Exif (IFD0 with the GPS and Exif sub-IFDs), without reading any value."""
    if exif is None or not len(exif):  # noqa: PLC1802 - Image.Exif has no __bool__ of its own
        return set()
    kinds = set()
    get_ifd = getattr(exif, "get_ifd", None)
    if get_ifd is not None and get_ifd(_GPS_IFD):
        kinds.add("gps")
    tags = list(exif) + (list(get_ifd(_EXIF_IFD)) if get_ifd is not None else [])
    for tag in tags:
        if tag not in _STRUCTURE_TAGS:
            kinds.add(_TAG_KINDS.get(tag, "other_exif"))
    return kinds


def _load_exif(payload: bytes) -> tuple[set[str], int]:
    """(kinds, orientation) of an APP1 Exif payload ("Exif\\0\\0" + TIFF)."""
    from PIL import Image

    exif = Image.Exif()
    try:
        exif.load(payload)
    except Exception:  # noqa: BLE001 - PIL raises several types for a malformed TIFF structure
        return {"other_exif"}, 1  # unreadable, but it is EXIF and it goes
    orientation = exif.get(_ORIENTATION, 1)
    return exif_kinds(exif) or ({"other_exif"} if len(payload) > 6 else set()), (
        orientation if isinstance(orientation, int) else 1)


def _segment_kinds(marker: int, payload: bytes) -> tuple[set[str], int, bool]:
    """(kinds, orientation, keep) of one JPEG header segment."""
    if marker == _COM:
        return {"comment"}, 1, False
    if marker == 0xE1 and payload.startswith(b"Exif\x00\x00"):
        kinds, orientation = _load_exif(payload)
        return kinds, orientation, False
    if marker == 0xE1 and payload.startswith(_XMP_PREFIXES):
        return {"xmp"}, 1, False
    if marker == 0xED:  # APP13: Photoshop image resources, where IPTC-IIM lives
        return {"iptc"}, 1, False
    keep = ((marker == 0xE0 and payload.startswith(b"JFIF\x00")) or (marker == 0xE2 and payload.startswith(
        b"ICC_PROFILE\x00")) or (marker == 0xEE and payload.startswith(b"Adobe")))
    if keep or not 0xE0 <= marker <= 0xEF:
        return set(), 1, True  # the tables, frame header and restart interval: the image itself
    return {"other_segment"}, 1, False


def _next_marker(data: bytes, pos: int) -> tuple[int, int]:
    """(marker, position after it) at pos, skipping fill bytes; MetadataError when no marker is there."""
    if pos >= len(data) or data[pos] != 0xFF:
        raise MetadataError(f"no JPEG marker at byte {pos} (found {data[pos:pos + 2].hex() or 'the end'})")
    while pos < len(data) and data[pos] == 0xFF:
        pos += 1
    if pos >= len(data):
        raise MetadataError("the JPEG ends inside a marker")
    return data[pos], pos + 1


def _segment_end(data: bytes, pos: int) -> int:
    if pos + 2 > len(data):
        raise MetadataError(f"the JPEG ends inside a segment length at byte {pos}")
    return pos + struct.unpack(">H", data[pos:pos + 2])[0]


def _scan_end(data: bytes, pos: int) -> int:
    """The end of the image: the byte after its EOI marker, or len(data) when truncated. The scans, and the tables
    between progressive scans, are walked: in entropy-coded data 0xFF is followed by 0x00 (stuffing) or a restart
    marker, so the first other marker after them is a table, the next scan or EOI (searched by the regex engine: a
    Python loop over a phone photo's bytes would cost milliseconds per image)."""
    while (found := _MARKER.search(data, pos)) is not None:
        if found.group(1)[0] == _EOI:
            return found.end()
        pos = min(_segment_end(data, found.end()), len(data))  # DHT, DQT, DRI, SOS... of a progressive JPEG
    return len(data)  # truncated: merge's validation and the server's decode report it, not this


def _ends_at_eoi(data: bytes) -> bool:
    """Whether the file ends with an EOI marker (zero padding allowed). With a header free of metadata, it is taken
    as one image without walking its scans (a third of the cost of hashing it): phones that append a second image
    declare it in the header (MPF in APP2, XMP GContainer), and vendor trailers (Samsung's SEFT) do not end in EOI."""
    return data.endswith(b"\xff\xd9") or data.rstrip(b"\x00").endswith(b"\xff\xd9")


def _jpeg_parts(data: bytes) -> tuple[list[tuple[int, int]], set[str], int]:
    """(the (start, end) spans to keep, the kinds dropped, the EXIF orientation) of a JPEG, walking its segments
    (spans, not slices: a clean image is not copied)."""
    kept, kinds, orientation, pos = [(0, 2)], set(), 1, 2
    while True:
        start = pos
        marker, pos = _next_marker(data, pos)
        if marker in _STANDALONE:
            kept.append((start, pos))
            continue
        end = _segment_end(data, pos)
        if marker == _SOS:
            image_end = len(data) if not kinds and _ends_at_eoi(data) else _scan_end(data, end)
            kept.append((start, image_end))
            if image_end < len(data) and data[image_end:].strip(b"\x00"):
                kinds.add("appended_data")  # e.g. a phone's MPF second image, its own EXIF included
            return kept, kinds, orientation
        found, turned, keep = _segment_kinds(marker, data[pos + 2:end])
        kinds |= found
        orientation = turned if turned != 1 else orientation
        if keep:
            kept.append((start, end))
        pos = end


def _reencode(data: bytes, kinds: set[str]) -> Stripped:
    """Decode, turn upright (EXIF orientation), and encode again in the same format with no metadata; MetadataError
    when the pixels cannot be decoded (truncated, corrupt, over Pillow's decompression-bomb limit)."""
    try:
        return _reencoded(data, kinds)
    except Exception as err:  # noqa: BLE001 - PIL raises many types for bad pixel data
        raise MetadataError(f"its pixels could not be decoded to re-encode it without metadata ({err})") from err


def _reencoded(data: bytes, kinds: set[str]) -> Stripped:
    from PIL import Image, ImageOps, JpegImagePlugin

    with Image.open(io.BytesIO(data)) as image:
        fmt, icc = image.format or "PNG", image.info.get("icc_profile")
        options: dict[str, object] = {"icc_profile": icc} if icc and fmt in ("JPEG", "PNG") else {}
        if fmt == "JPEG":
            options.update(quality=95, subsampling=JpegImagePlugin.get_sampling(image))
        upright = ImageOps.exif_transpose(image)
        upright.info = {}  # Pillow copies some of info (the JPEG comment) into what it saves
        buffer = io.BytesIO()
        upright.save(buffer, format=fmt, **options)
    return Stripped(buffer.getvalue(), _ordered(kinds), "reencoded")


def _ordered(kinds: Iterable[str]) -> tuple[str, ...]:
    found = set(kinds)
    return tuple(k for k in KINDS if k in found)


def _pil_kinds(data: bytes) -> tuple[set[str], int]:
    """(kinds, orientation) of a non-JPEG image, from what PIL reads of it (PNG text chunks, eXIf, XMP, GIF
    comments)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        exif = image.getexif()
        kinds = exif_kinds(exif)
        for key, value in image.info.items():
            if key in ("xmp", "XML:com.adobe.xmp"):
                kinds.add("xmp")
            elif key == "comment" or isinstance(value, str):  # GIF comments; PNG tEXt, zTXt and iTXt chunks
                kinds.add("comment")
            elif key == "exif" and not kinds:
                kinds.add("other_exif")
        orientation = exif.get(_ORIENTATION, 1)
    return kinds, orientation if isinstance(orientation, int) else 1


def strip_metadata(data: bytes) -> Stripped:
    """`data` without EXIF, XMP, IPTC, comments or appended data, turned upright first when EXIF says it is not;
    an image that carries none of them comes back as the same bytes. MetadataError when its structure is unreadable."""
    if data[:2] == b"\xff\xd8":
        kept, kinds, orientation = _jpeg_parts(data)
        if orientation not in (0, 1) and orientation <= 8:
            return _reencode(data, kinds)
        if not kinds:
            return Stripped(data)
        return Stripped(b"".join(data[a:b] for a, b in kept), _ordered(kinds), "segments")
    try:
        kinds, orientation = _pil_kinds(data)
    except Exception as err:  # noqa: BLE001 - PIL raises many types for non-images
        raise MetadataError(f"not an image PIL can read ({err})") from err
    return _reencode(data, kinds) if kinds or orientation not in (0, 1) else Stripped(data)


def metadata_kinds(data: bytes) -> tuple[str, ...]:
    """The kinds strip_metadata would remove (nothing is rewritten)."""
    if data[:2] == b"\xff\xd8":
        return _ordered(_jpeg_parts(data)[1])
    try:
        return _ordered(_pil_kinds(data)[0])
    except Exception as err:  # noqa: BLE001
        raise MetadataError(f"not an image PIL can read ({err})") from err


def tally(found: Iterable[tuple[str, ...]]) -> dict[str, int]:
    """Counts for reports: images_with_metadata, then one count per kind (images carrying it), zeros left out."""
    found = [kinds for kinds in found if kinds]
    per_kind = Counter(kind for kinds in found for kind in kinds)
    return {"images_with_metadata": len(found), **{kind: per_kind[kind] for kind in KINDS if per_kind[kind]}}


def store_stripped(src: Path, dst: Path, place: Callable[[Path, Path], None]) -> dict[str, object]:
    """Put src at dst without its metadata: `place` (a hard link or copy) when it carries none, else the stripped
    bytes written anew (the source file is never changed). Returns the manifest hints of the stored file: size and
    sha256 (computed from the bytes read here, so the manifest need not read the file again) and, when rewritten,
    the kinds removed, how, and source_sha256 (the file as it came). An unreadable file is placed as it is
    ("metadata_unreadable": merge's validation reports it as corrupt)."""
    import hashlib

    data = src.read_bytes()
    try:
        stripped = strip_metadata(data)
    except MetadataError as err:
        place(src, dst)
        return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "metadata_unreadable": str(err)}
    if not stripped.method:  # nothing to remove: the very same bytes
        place(src, dst)
        return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(stripped.data)
    return {"size": len(stripped.data), "sha256": hashlib.sha256(stripped.data).hexdigest(),
            "source_sha256": hashlib.sha256(data).hexdigest(), "metadata_removed": list(stripped.kinds),
            "metadata_method": stripped.method}


def privacy_summary(entries: Mapping[str, Mapping[str, object]]) -> dict[str, object]:
    """privacy.json of an ingested data set: the counts (images_scanned, images_with_metadata, one per kind,
    images_unreadable) and every rewritten or unreadable image with its kinds, never a value."""
    counts = {"images_scanned": len(entries),
              **tally(tuple(e.get("metadata_removed", ())) for e in entries.values()),
              "images_unreadable": sum("metadata_unreadable" in e for e in entries.values())}
    listed = [{"path": path, **{k: e[k] for k in ("metadata_removed", "metadata_method", "metadata_unreadable",
                                                   "source_sha256") if k in e}}
              for path, e in sorted(entries.items()) if "metadata_removed" in e or "metadata_unreadable" in e]
    return {**counts, "images": listed}


PRIVACY_FILE = "privacy.json"


def read_privacy_counts(dataset_dir: Path) -> dict[str, int]:
    """privacy.json's counts, prefixed metadata_ for a stage's Metrics and report ({} for a data set ingested
    before it was written)."""
    import json

    path = dataset_dir / PRIVACY_FILE
    if not path.is_file():
        return {}
    summary = json.loads(path.read_text())
    return {f"metadata_{k}": int(v) for k, v in summary.items() if isinstance(v, int)}


def privacy_section(dataset_dir: Path) -> str:
    """The data report's section: how many images carried metadata at ingest, which kinds, each image listed."""
    import json

    path = dataset_dir / PRIVACY_FILE
    if not path.is_file():
        return ""
    summary = json.loads(path.read_text())
    lines = ["", "## Image metadata stripped at ingest", "",
             f"{summary['images_with_metadata']} of {summary['images_scanned']} images carried metadata (EXIF, XMP, "
             "IPTC, comments); it was removed from the stored copies (values not shown).", "",
             "| kind | images |", "|---|---:|"]
    lines += [f"| {kind} | {summary[kind]} |" for kind in KINDS if summary.get(kind)]
    if summary["images"]:
        lines += ["", "| image | kinds | how |", "|---|---|---|"]
        lines += [f"| {e['path']} | {', '.join(e.get('metadata_removed', []))} | "
                  f"{e.get('metadata_method') or 'unreadable: ' + e.get('metadata_unreadable', '')} |"
                  for e in summary["images"]]
    return "\n".join(lines) + "\n"


def encode_png(pixels: np.ndarray) -> bytes:
    """uint8 RGB pixels as a PNG holding nothing else (no text, EXIF or time chunks): what dermpipe serves back or
    writes of an image it drew (Grad-CAM overlays), so no request metadata can ride along with it."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()
