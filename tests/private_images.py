"""JPEGs and PNGs carrying the health data a clinic camera or phone writes (GPS position, device serial, owner,
capture time, a comment naming the patient, XMP, IPTC), built with Pillow's own EXIF writer, for the privacy tests.
The values are distinctive strings so a test can search the stored bytes for them."""

from __future__ import annotations

import io
import struct

import numpy as np
from PIL import Image

SECRETS = (b"SN-4F2A-77311", b"Jane Doe 1962-03-14", b"Dr Ruth Example", b"2026:11:24 09:41:07")
XMP = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
       b'<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/" dc:creator="Dr Ruth Example"/></rdf:RDF>'
       b"</x:xmpmeta>")


def lesion_pixels(size: tuple[int, int] = (160, 120), seed: int = 0) -> np.ndarray:
    """A smooth lesion-like RGB picture (a dark blob on skin tones), not noise: JPEG keeps it faithfully."""
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    blob = np.exp(-(((x - w * 0.45) / (w * 0.25)) ** 2 + ((y - h * 0.55) / (h * 0.3)) ** 2))
    skin = np.array([224, 172, 150]) - blob[..., None] * np.array([150, 120, 100])
    return np.clip(skin + rng.normal(0, 3, (h, w, 3)), 0, 255).astype(np.uint8)


def health_exif(orientation: int = 1) -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = "DermaCam"  # Make: other EXIF
    exif[0x0132] = SECRETS[3].decode()  # DateTime
    exif[0x013B] = SECRETS[2].decode()  # Artist
    if orientation != 1:
        exif[0x0112] = orientation
    gps = exif.get_ifd(0x8825)
    gps.update({1: "N", 2: (48.0, 51.0, 24.0), 3: "E", 4: (2.0, 21.0, 3.0)})
    details = exif.get_ifd(0x8769)
    details.update({0xA431: SECRETS[0].decode(), 0x9003: SECRETS[3].decode(),
                    0x9286: b"ASCII\x00\x00\x00" + SECRETS[1]})
    return exif


def _app13_iptc(text: bytes) -> bytes:
    """An APP13 Photoshop segment with one IPTC-IIM dataset (2:120, the caption), as Photoshop writes it."""
    iptc = b"\x1c\x02\x78" + struct.pack(">H", len(text)) + text
    resource = b"8BIM" + struct.pack(">H", 0x0404) + b"\x00\x00" + struct.pack(">I", len(iptc)) + iptc
    resource += b"\x00" * (len(iptc) % 2)
    payload = b"Photoshop 3.0\x00" + resource
    return b"\xff\xed" + struct.pack(">H", len(payload) + 2) + payload


def private_jpeg(pixels: np.ndarray | None = None, *, orientation: int = 1, xmp: bool = True, iptc: bool = True,
                 appended: bool = False) -> bytes:
    """A JPEG with GPS, a serial, an owner, capture times, a user comment, a COM comment and (optionally) XMP, IPTC
    and a second image appended after its end (as phones' MPF files have)."""
    image = Image.fromarray(lesion_pixels() if pixels is None else pixels)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90, exif=health_exif(orientation), comment=SECRETS[1],
               **({"xmp": XMP} if xmp else {}))
    data = buffer.getvalue()
    if iptc:
        data = data[:2] + _app13_iptc(SECRETS[1]) + data[2:]
    if appended:
        data += clean_jpeg(lesion_pixels((32, 24), seed=1))
    return data


def clean_jpeg(pixels: np.ndarray | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(lesion_pixels() if pixels is None else pixels).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def private_png(pixels: np.ndarray | None = None) -> bytes:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", SECRETS[1].decode())
    info.add_itxt("XML:com.adobe.xmp", XMP.decode())
    buffer = io.BytesIO()
    Image.fromarray(lesion_pixels() if pixels is None else pixels).save(buffer, "PNG", pnginfo=info,
                                                                         exif=health_exif())
    return buffer.getvalue()


def leaked(data: bytes) -> list[bytes]:
    """The distinctive values still present anywhere in `data` (XMP's creator included)."""
    return [secret for secret in (*SECRETS, b"xmpmeta", b"Photoshop 3.0") if secret in data]
