"""inspect_image_bytes: the header checks always run; the pixel decode only when asked (the server decodes itself)."""

from pathlib import Path

from dermpipe.data.image_check import inspect_image_bytes

ISIC2020 = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "isic2020-sample" / "images"


def test_header_only_inspection_skips_the_decode_but_not_the_header_checks():
    real = sorted(ISIC2020.glob("*.jpg"))[0].read_bytes()
    truncated = real[: len(real) // 2]
    assert inspect_image_bytes(truncated, max_pixels=10**7, formats=("JPEG",)).problem == "truncated"
    header_only = inspect_image_bytes(truncated, max_pixels=10**7, formats=("JPEG",), decode=False)
    assert (header_only.problem, header_only.format, header_only.width, header_only.height) == ("", "JPEG", 512, 512)
    assert inspect_image_bytes(real, max_pixels=512 * 512 - 1, formats=("JPEG",), decode=False).problem == "bomb"
    assert inspect_image_bytes(real, max_pixels=10**7, formats=("PNG",), decode=False).problem == "wrong_format"
    assert inspect_image_bytes(b"plain text", max_pixels=10**7, formats=("JPEG",), decode=False).problem == (
        "not_an_image")
