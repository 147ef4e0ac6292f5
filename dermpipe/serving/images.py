"""Input validation: every image is checked (empty, not an image, unsupported format, over the pixel limit) from its
header with PIL, then decoded with the served model's own decoder (dermpipe.data.images.decode_resize_bytes, the
one serving_default runs), so a truncated or corrupt file gets a 4xx with a message, never a 5xx, and the pixels are
decoded once: the batch runs on them. b64 decoding and the optional patient metadata are checked here too.

Health data goes first: EXIF, XMP, IPTC and comments are stripped (dermpipe.data.image_privacy, after applying the
EXIF orientation) before the decode, so the bytes the prediction log stores are the ones the model decoded."""

import base64
import binascii
import io
import re
from dataclasses import dataclass, replace

import numpy as np

from dermpipe.data.image_check import ImageCheck, inspect_image_bytes
from dermpipe.data.image_privacy import MetadataError, strip_metadata
from dermpipe.data.schema import archive_value
from dermpipe.serving.settings import ServingError, tf_error_detail

ACCEPTED_FORMATS = ("JPEG", "PNG", "BMP", "GIF")  # what tf.io.decode_image (the model's decoder) reads
SIGNATURES = {b"\xff\xd8": "JPEG", b"\x89PNG\r\n\x1a\n": "PNG", b"GIF8": "GIF"}


@dataclass
class CheckedImage:
    data: bytes
    format: str
    width: int
    height: int
    pixels: np.ndarray | None  # float32 [image_size, image_size, 3]: what serving_default decodes from `data`
    metadata: tuple[str, ...] = ()  # the kinds of metadata stripped from the request's image (never the values)


def check_image(data: bytes, *, max_pixels: int, image_size: int, what: str = "image") -> CheckedImage:
    """Check `data`'s header with PIL (bounded by max_pixels), then decode it as serving_default does at image_size;
    ServingError if unusable.

    The header checks are inspect_image_bytes' (a decompression bomb is refused before any pixel is decoded). The
    decode reads every byte of the stream, so truncation and corruption are caught by the decode the model needs
    anyway: one decode per image, not a validation decode and a model decode.
    """
    import tensorflow as tf

    from dermpipe.data.images import bytes_decoder

    check = inspect_image_bytes(data, max_pixels=max_pixels, formats=ACCEPTED_FORMATS, decode=False)
    if check.problem:
        raise _refusal(check, data, max_pixels, what)
    try:
        stripped = strip_metadata(data)
    except MetadataError as err:
        raise ServingError(422, f"{what}: corrupt {check.format} ({err}); re-encode or re-upload the file") from None
    data = stripped.data
    try:
        pixels = bytes_decoder(image_size)(data).numpy()
    except tf.errors.InvalidArgumentError as err:
        detail = tf_error_detail(err)
        raise _refusal(replace(check, problem="corrupt", detail=detail), data, max_pixels, what) from None
    width, height = _size(data) if stripped.method == "reencoded" else (check.width, check.height)  # turned upright
    return CheckedImage(data=data, format=check.format, width=width, height=height, pixels=pixels,
                        metadata=stripped.kinds)


def _size(data: bytes) -> tuple[int, int]:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return image.size


def check_images(images: list[bytes], *, max_pixels: int, image_size: int) -> list[CheckedImage]:
    """check_image on each image of one request, named "image" alone or "instance i" among several."""
    what = [f"instance {i}" if len(images) > 1 else "image" for i in range(len(images))]
    return [check_image(data, max_pixels=max_pixels, image_size=image_size, what=name)
            for data, name in zip(images, what, strict=True)]


def _refusal(check: ImageCheck, data: bytes, max_pixels: int, what: str) -> ServingError:
    """The status and message for a defect inspect_image_bytes found."""
    width, height = check.width, check.height
    if check.problem == "empty":
        return ServingError(400, f"{what}: empty; send the bytes of a JPEG or PNG image")
    if check.problem == "bomb" and not check.format:  # Pillow's own guard refused the header
        return ServingError(413, f"{what}: over the pixel limit ({check.detail})")
    if not check.format:  # the header could not be read
        for signature, name in SIGNATURES.items():
            if data.startswith(signature):
                return ServingError(422, f"{what}: corrupt or truncated {name} ({len(data)} bytes; PIL: "
                                         f"{check.detail}); re-encode or re-upload the file")
        return ServingError(415, f"{what}: not an image PIL can read ({len(data)} bytes starting "
                                 f"{data[:8]!r}); send a JPEG or PNG")
    if check.problem == "wrong_format":
        return ServingError(415, f"{what}: {check.format} images are not served; send one of "
                                 f"{', '.join(ACCEPTED_FORMATS)}")
    if check.problem == "bomb":
        return ServingError(413, f"{what}: {width}x{height} = {width * height} pixels is over the limit of "
                                 f"{max_pixels} (decompression-bomb guard); downsize the image first")
    if check.problem == "no_pixels":
        return ServingError(422, f"{what}: {width}x{height} has no pixels")
    return ServingError(422, f"{what}: corrupt or truncated {check.format} ({check.detail}); re-encode or "
                             f"re-upload the file")


def decode_b64(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as err:
        raise ServingError(400, f"{what}: b64 is not valid base64 ({err})") from err


METADATA_FIELDS = ("age_approx", "sex", "anatom_site_general")
# Optional per-image grouping a clinic may send (pseudonymous ids, never names): logged, not shown to the model, so
# that a labelled image retrained on keeps its lesion and patient together on one side of the split.
GROUPING_FIELDS = ("lesion_id", "patient_id")
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


def check_metadata(age_approx: float | None, sex: str | None, site: str | None, what: str) -> dict[str, object]:
    """The optional patient metadata, normalised the ISIC Archive's way as merge normalises the training data
    ("Female" -> "female", "Anterior Torso" -> "anterior torso", an age 47 -> 45, above 85 -> 85); a 422 naming the
    field and what is expected only for what isic-metadata's validators refuse."""
    checked: dict[str, object] = {}
    for column, raw in (("age_approx", age_approx), ("sex", sex), ("anatom_site_general", site)):
        verdict = archive_value(column, raw) if raw is not None else None
        if verdict is not None and verdict.refused:
            raise ServingError(422, f"{what}: {column} {raw!r}: {verdict.note}")
        checked[column] = verdict.value if verdict is not None else None
    if checked["age_approx"] is not None:
        checked["age_approx"] = float(checked["age_approx"])  # type: ignore[arg-type]
    return checked


def check_grouping(lesion_id: object, patient_id: object, what: str) -> dict[str, str | None]:
    """The optional lesion and patient ids: 1-128 letters, digits, . _ : - (e.g. ISIC's IL_0000123 / IP_1234567)."""
    checked: dict[str, str | None] = {}
    for key, value in (("lesion_id", lesion_id), ("patient_id", patient_id)):
        if value is not None and (not isinstance(value, str) or not _ID.fullmatch(value)):
            raise ServingError(422, f"{what}: {key} {value!r} is not an id of 1-128 letters, digits, '.', '_', ':' "
                                    "or '-' (send a pseudonymous id such as IL_0000123, never a name)")
        checked[key] = value
    return checked
