import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dermpipe import config
from dermpipe.data.image_stats import STAT_COLUMNS
from dermpipe.serving.images import check_image, check_metadata
from dermpipe.serving.prediction_log import PredictionLog, log_line
from dermpipe.serving.settings import ServingError

ISIC2020 = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "isic2020-sample" / "images"


def _line(timestamp: str, rid: str, emb=None) -> dict:
    stats = {k: 0.5 for k in STAT_COLUMNS}
    probabilities = [0.05, 0.6, 0.05, 0.05, 0.05, 0.1, 0.05, 0.05]
    return log_line(timestamp=timestamp, request_id=rid, model_name="m", model_version=3, classes=config.CLASSES,
                    probabilities=probabilities, stats=stats, metadata={"sex": "male"}, embedding_summary=emb)


def test_log_line_has_the_contract_keys():
    line = _line("2026-11-25T10:00:00.000+00:00", "r1", emb=[1.0, -2.0])
    assert line["predicted_class"] == "NV" and line["confidence"] == 0.6
    assert (line["age_approx"], line["sex"], line["anatom_site_general"]) == (None, "male", None)
    assert (line["emb_0"], line["emb_1"]) == (1.0, -2.0) and "emb_2" not in line
    assert "emb_0" not in _line("2026-11-25T10:00:00+00:00", "r2")


def test_lines_are_buffered_then_appended_per_day(tmp_path):
    log = PredictionLog(str(tmp_path), "m", flush_seconds=3600, max_buffer=3)
    log.append([_line("2026-11-24T23:59:59.000+00:00", "a"), _line("2026-11-25T00:00:01.000+00:00", "b")])
    assert not list(tmp_path.rglob("*.jsonl")), "buffered until a flush"
    log.append([_line("2026-11-25T00:00:02.000+00:00", "c")])  # third line fills the buffer: flushed
    log.append([_line("2026-11-25T00:00:03.000+00:00", "d")])
    log.close()  # flushes the rest
    day1 = list((tmp_path / "m" / "date=2026-11-24").glob("*.jsonl"))
    day2 = list((tmp_path / "m" / "date=2026-11-25").glob("*.jsonl"))
    assert len(day1) == 1 and len(day2) == 1, "one appended file per writer and day"
    assert [json.loads(x)["request_id"] for x in day2[0].read_text().splitlines()] == ["b", "c", "d"]
    assert log.lines_written == 4


def test_a_failed_write_keeps_the_lines_for_the_next_flush(tmp_path):
    blocker = tmp_path / "m"
    blocker.write_text("a file where the model folder should be")
    log = PredictionLog(str(tmp_path), "m", flush_seconds=3600)
    log.append([_line("2026-11-25T00:00:02.000+00:00", "c")])
    assert log.flush() == 0 and log.write_errors == 1
    blocker.unlink()
    assert log.flush() == 1


def test_log_images_are_saved_beside_the_day(tmp_path):
    log = PredictionLog(str(tmp_path), "m", log_images=True)
    path = log.save_image("2026-11-25T00:00:02.000+00:00", "r1.jpg", b"\xff\xd8jpeg")
    assert path == f"{tmp_path}/m/date=2026-11-25/images/r1.jpg"
    assert (tmp_path / "m/date=2026-11-25/images/r1.jpg").read_bytes() == b"\xff\xd8jpeg"


def _encoded(fmt: str, size=(40, 30), mode="RGB") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).convert(
        mode).save(buffer, format=fmt)
    return buffer.getvalue()


def test_check_image_accepts_what_the_model_decodes():
    checked = check_image(_encoded("JPEG"), max_pixels=10_000, image_size=32)
    assert checked.format == "JPEG" and (checked.width, checked.height) == (40, 30)
    assert checked.pixels.shape == (32, 32, 3) and checked.pixels.dtype == np.float32
    assert check_image(_encoded("PNG", mode="L"), max_pixels=10_000, image_size=32).format == "PNG"


def test_checked_pixels_are_exactly_what_serving_default_decodes():
    import tensorflow as tf

    from dermpipe.model.export import decode_batch

    real = [path.read_bytes() for path in sorted(ISIC2020.glob("*.jpg"))[:4]] + [_encoded("PNG", size=(300, 200))]
    graph = decode_batch(tf.constant(real), 64).numpy()
    checked = np.stack([check_image(data, max_pixels=10**7, image_size=64).pixels for data in real])
    np.testing.assert_array_equal(checked, graph)


def test_the_decode_catches_truncation_anywhere_and_corruption():
    real = sorted(ISIC2020.glob("*.jpg"))[0].read_bytes()
    assert check_image(real, max_pixels=10**7, image_size=64).width == 512
    for cut in (0.05, 0.5, 0.9, 0.99):
        with pytest.raises(ServingError) as err:
            check_image(real[: int(len(real) * cut)], max_pixels=10**7, image_size=64)
        assert err.value.status == 422 and "corrupt or truncated JPEG" in err.value.message, cut
    scrambled = real[:5000] + bytes(b ^ 0x5A for b in real[5000:5300]) + real[5300:]  # header intact, stream not
    with pytest.raises(ServingError) as err:
        check_image(scrambled, max_pixels=10**7, image_size=64, what="instance 1")
    assert err.value.status == 422 and err.value.message.startswith("instance 1: corrupt or truncated JPEG (")
    assert "function_node" not in err.value.message  # TF's graph prefix is not the caller's business


def test_lines_submitted_to_the_worker_are_all_written_on_close(tmp_path):
    log = PredictionLog(str(tmp_path), "m", flush_seconds=3600, max_pending=2).start()
    accepted = [log.submit(lambda i=i: [_line("2026-11-25T00:00:00.000+00:00", f"r{i}")]) for i in range(50)]
    assert any(accepted)
    for i, ok in enumerate(accepted):
        if not ok:  # what the server does when the worker is behind: build inline
            log.append([_line("2026-11-25T00:00:00.000+00:00", f"r{i}")])
    log.close()
    lines = (tmp_path / "m" / "date=2026-11-25").glob("*.jsonl")
    ids = sorted(json.loads(x)["request_id"] for f in lines for x in f.read_text().splitlines())
    assert ids == sorted(f"r{i}" for i in range(50))


@pytest.mark.parametrize(("data", "status", "fragment"), [
    (b"", 400, "empty"),
    (b"plain text", 415, "not an image"),
    (_encoded("TIFF"), 415, "TIFF"),
    (_encoded("JPEG")[:200], 422, "truncated"),
    (_encoded("PNG", size=(200, 100)), 413, "20000 pixels"),
])
def test_check_image_refuses_with_a_status_and_a_message(data, status, fragment):
    with pytest.raises(ServingError) as err:
        check_image(data, max_pixels=10_000, image_size=32, what="instance 2")
    assert err.value.status == status and fragment in err.value.message
    assert err.value.message.startswith("instance 2: ")


def test_check_metadata_vocabularies():
    assert check_metadata(40, "male", "head/neck", "form") == {"age_approx": 40, "sex": "male",
                                                                "anatom_site_general": "head/neck"}
    # as the ISIC Archive (isic-metadata) does: an age above 85 counts as 85, a negative one is refused
    assert check_metadata(130, None, None, "form")["age_approx"] == 85
    for args, fragment in (((-5, None, None), "age_approx"), ((None, "m", None), "sex"),
                           ((None, None, "arm"), "anatom_site_general")):
        with pytest.raises(ServingError, match=fragment):
            check_metadata(*args, "form")


def test_a_remote_log_root_gets_one_object_per_flush():
    """gs:// roots go through tf.io.gfile (no append on object stores); ram:// stands in for gs:// here."""
    import tensorflow as tf

    log = PredictionLog("ram://predlog-test", "m", flush_seconds=3600)
    log.append([_line("2026-11-25T00:00:01.000+00:00", "a")])
    log.flush()
    log.append([_line("2026-11-25T00:00:02.000+00:00", "b"), _line("2026-11-26T00:00:00.000+00:00", "c")])
    log.close()
    day = sorted(tf.io.gfile.glob("ram://predlog-test/m/date=2026-11-25/*.jsonl"))
    assert len(day) == 2 and day[0].endswith("-000001.jsonl")
    with tf.io.gfile.GFile(day[1]) as handle:
        assert json.loads(handle.read())["request_id"] == "b"
    assert len(tf.io.gfile.glob("ram://predlog-test/m/date=2026-11-26/*.jsonl")) == 1
