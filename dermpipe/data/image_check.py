"""One image validator for every place that accepts image bytes: the merge stage (its report) and the model server
(its 4xx responses). It says what is wrong; each caller words it for its audience.

The header is read first (size and mode cost nothing), so a decompression bomb is refused before any pixel is
decoded. Files that pass the header checks are then decoded in full, JPEGs at 1/8 scale (libjpeg's DCT scaling, PIL's
draft mode): every byte of the compressed stream is still read, so truncation and corruption show, at a fraction of
the cost of a full decode.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Collection
from dataclasses import dataclass, replace
from typing import Literal

ImageProblem = Literal[
    "",  # none: a whole image of an accepted format (and mode)
    "empty",  # zero bytes
    "bomb",  # over the pixel limit: max_pixels (size known) or PIL's own guard (detail is PIL's message)
    "not_an_image",  # no PIL plugin recognises the content
    "corrupt",  # PIL failed on the header or the pixel data
    "truncated",  # the same, and PIL says the data ends early
    "wrong_format",  # an image, but not one of `formats`
    "wrong_mode",  # an image, but not one of `modes`
    "no_pixels",  # zero width or height
]


@dataclass(frozen=True)
class ImageCheck:
    """What inspect_image_bytes found. format is "" when the header could not be read (width and height are 0)."""

    width: int = 0
    height: int = 0
    format: str = ""
    mode: str = ""
    problem: ImageProblem = ""
    detail: str = ""  # PIL's message where PIL refused the data; "" for the checks made here


def inspect_image_bytes(data: bytes, *, max_pixels: int, formats: Collection[str],
                        modes: Collection[str] | None = None, decode: bool = True) -> ImageCheck:
    """Open `data` with PIL under a pixel bound and decode it, reporting the first defect found.

    Checked in order: empty; header (PIL's own bomb guard, unknown or unreadable content); format in `formats`;
    width x height <= max_pixels; at least one pixel; mode in `modes` (any when None); the full decode, unless
    decode=False (a caller that decodes the pixels itself next, as the model server does, and so catches truncation
    and corruption there without decoding twice).
    """
    from PIL import Image

    if not data:
        return ImageCheck(problem="empty")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except Exception as err:  # noqa: BLE001 - PIL raises many types for non-images
            return ImageCheck(problem=_open_problem(err), detail=str(err))
        with image:
            width, height = image.size
            header = ImageCheck(width, height, image.format or "", image.mode)
            problem = _header_problem(header, max_pixels, formats, modes)
            if problem or not decode:
                return replace(header, problem=problem)
            try:
                if header.format == "JPEG":
                    image.draft("RGB", (max(1, width // 8), max(1, height // 8)))
                image.load()
            except Exception as err:  # noqa: BLE001 - truncated/corrupt data
                return replace(header, problem=_decode_problem(err), detail=str(err))
            return header


def _open_problem(err: Exception) -> ImageProblem:
    from PIL import Image, UnidentifiedImageError

    if isinstance(err, Image.DecompressionBombError):
        return "bomb"
    if isinstance(err, UnidentifiedImageError):
        return "not_an_image"
    return _decode_problem(err)


def _decode_problem(err: Exception) -> ImageProblem:
    return "truncated" if "truncated" in str(err).lower() else "corrupt"


def _header_problem(header: ImageCheck, max_pixels: int, formats: Collection[str],
                    modes: Collection[str] | None) -> ImageProblem:
    if header.format not in formats:
        return "wrong_format"
    if header.width * header.height > max_pixels:
        return "bomb"
    if header.width < 1 or header.height < 1:
        return "no_pixels"
    if modes is not None and header.mode not in modes:
        return "wrong_mode"
    return ""
