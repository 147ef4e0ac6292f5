"""TFRecord shards of the prepared data set: the contract between the prepare stage (writer) and training (reader).

Every record is one tf.train.Example with these features (names and types are the contract):

| feature | type | value |
|---|---|---|
| image | bytes | PNG (lossless), RGB, image_size x image_size, centre-cropped to a square then resized |
| label | int64 | index into config.CLASSES |
| image_id | bytes | ISIC image id |
| split | bytes | train / val / test |
| age_approx | float | years; -1 when missing |
| sex | bytes | male / female; "" when missing |
| anatom_site_general | bytes | ISIC site vocabulary; "" when missing |
| orig_height, orig_width | int64 | pixels of the original image |

Shards are `<split>-<nnnnn>.tfrecord` of about `shard_bytes` each, listed with counts, bytes and sha256 in
`shards.json` beside them. `shard_records(files)` yields the parsed features with the image still encoded, so the
reader decides how (and where: CPU or GPU pipeline) to decode.

Resize policy: centre crop to the largest square, then resize (DCT-scaled decode + bilinear:
imagedata.decode_resize_bytes, the same function training, evaluation and serving use); stored as lossless PNG.
Padding was rejected: the pad width encodes the original aspect ratio, which in ISIC 2019 identifies the
contributing archive (HAM10000 600x450, BCN20000 1024x1024, MSK various), and the archives' class mixes differ, so a
padded image leaks a shortcut the network learns instead of the lesion. Dermoscopy centres the lesion, so the crop
loses only the periphery (often the dermatoscope's dark vignette). Squashing (no aspect kept) distorts lesion shape,
a diagnostic cue (asymmetry).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MANIFEST = "shards.json"
IMAGE_ENCODING = "png"  # lossless: the shard pixels are the serving pixels
RESIZE_POLICY = "centre-crop"
SPLITS = ("train", "val", "test")
FEATURE_TYPES = {
    "image": "bytes", "label": "int64", "image_id": "bytes", "split": "bytes", "age_approx": "float",
    "sex": "bytes", "anatom_site_general": "bytes", "orig_height": "int64", "orig_width": "int64",
}
RECORD_OVERHEAD = 16  # TFRecord framing: length (8) + two masked CRC32C (4 + 4)


def check_shard_size(shard_bytes: float) -> None:
    if shard_bytes <= 0:
        raise ValueError(f"shard size must be positive, got {shard_bytes} bytes")


def centre_crop_resize(data: bytes, image_size: int) -> tuple[bytes, int, int]:
    """(PNG at image_size x image_size, original width, original height) from an encoded image.

    The pixels are exactly those the training input, evaluation and the serving signature compute from the same
    file (dermpipe.data.images.decode_resize_bytes: DCT-scaled decode, centre square, bilinear resize), rounded to
    uint8 and stored losslessly: a model trained on the shards sees served images as it saw its training images. (A JPEG
    re-encode with another resampler differed by ~2 intensity levels on average, enough to cost a small model
    20 points of balanced accuracy between shard-fed validation and file-fed evaluation.)
    """
    import tensorflow as tf
    from PIL import Image

    from dermpipe.data.images import decode_resize_bytes, to_uint8

    with Image.open(io.BytesIO(data)) as im:  # header only: the original size, and PIL's verdict on the format
        width, height = im.size
    try:
        pixels = to_uint8(decode_resize_bytes(tf.constant(data), image_size))
    except tf.errors.OpError as err:
        raise ValueError(f"cannot decode: {err.message.splitlines()[0]}") from err
    png = tf.io.encode_png(pixels).numpy()
    return png, width, height


def encode_example(*, image: bytes, label: int, image_id: str, split: str, age_approx: float | None,
                   sex: str | None, anatom_site_general: str | None, orig_height: int, orig_width: int) -> bytes:
    """One serialized tf.train.Example in the contract above (missing metadata as -1 / "")."""
    import tensorflow as tf

    def _bytes(value: bytes | str) -> tf.train.Feature:
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode() if isinstance(value, str)
                                                                     else value]))

    def _int(value: int) -> tf.train.Feature:
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))

    age = -1.0 if age_approx is None or age_approx != age_approx else float(age_approx)  # NaN -> missing
    features = {
        "image": _bytes(image), "label": _int(label), "image_id": _bytes(image_id), "split": _bytes(split),
        "age_approx": tf.train.Feature(float_list=tf.train.FloatList(value=[age])),
        "sex": _bytes(_text(sex)), "anatom_site_general": _bytes(_text(anatom_site_general)),
        "orig_height": _int(orig_height), "orig_width": _int(orig_width),
    }
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def _text(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and value != value) else str(value)


def feature_spec() -> dict[str, Any]:
    """tf.io.parse_single_example spec of the contract."""
    import tensorflow as tf

    kinds = {"bytes": tf.string, "int64": tf.int64, "float": tf.float32}
    return {name: tf.io.FixedLenFeature([], kinds[kind]) for name, kind in FEATURE_TYPES.items()}


def shard_records(files: list[str]):
    """tf.data.Dataset of feature dicts (image still JPEG-encoded) read from TFRecord shard files, in file order."""
    import tensorflow as tf

    spec = feature_spec()
    return tf.data.TFRecordDataset(list(files)).map(lambda record: tf.io.parse_single_example(record, spec),
                                                    num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def load_manifest(folder: Path | str) -> dict[str, Any]:
    return json.loads((Path(folder) / MANIFEST).read_text())


def shard_files(folder: Path | str, split: str) -> list[str]:
    """Paths of one split's shards in a prepared Dataset folder (what training passes to shard_records)."""
    folder = Path(folder)
    return [str(folder / shard["file"]) for shard in load_manifest(folder)["shards"] if shard["split"] == split]


@dataclass
class ShardInfo:
    file: str
    split: str
    records: int = 0
    bytes: int = 0
    sha256: str = ""
    class_counts: dict[str, int] = field(default_factory=dict)


class ShardWriter:
    """Appends serialized examples to `<split>-<nnnnn>.tfrecord`, starting a new shard past shard_bytes."""

    def __init__(self, folder: Path, shard_bytes: int) -> None:
        check_shard_size(shard_bytes)
        self.folder, self.shard_bytes = folder, shard_bytes
        self.shards: list[ShardInfo] = []
        self._writer = None
        self._current: ShardInfo | None = None
        folder.mkdir(parents=True, exist_ok=True)

    def write(self, split: str, label_name: str, record: bytes) -> None:
        import tensorflow as tf

        current = self._current
        if current is None or current.split != split or current.bytes >= self.shard_bytes:
            self._close_current()
            index = sum(1 for s in self.shards if s.split == split)
            current = self._current = ShardInfo(file=f"{split}-{index:05d}.tfrecord", split=split)
            self._writer = tf.io.TFRecordWriter(str(self.folder / current.file))
        self._writer.write(record)
        current.records += 1
        current.bytes += len(record) + RECORD_OVERHEAD
        current.class_counts[label_name] = current.class_counts.get(label_name, 0) + 1

    def _close_current(self) -> None:
        if self._writer is None or self._current is None:
            return
        self._writer.close()
        path = self.folder / self._current.file
        self._current.bytes = path.stat().st_size
        self._current.sha256 = _sha256(path)
        self.shards.append(self._current)
        self._writer, self._current = None, None

    def close(self) -> list[ShardInfo]:
        self._close_current()
        return self.shards

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def manifest_dict(shards: list[ShardInfo], *, image_size: int, failed: list[dict[str, str]],
                  params: dict[str, Any]) -> dict[str, Any]:
    """shards.json: the shard list plus per-split totals (records, bytes, shards, class counts)."""
    from dermpipe import config
    counts: dict[str, dict[str, Any]] = {}
    for split in SPLITS:
        mine = [s for s in shards if s.split == split]
        classes = {c: sum(s.class_counts.get(c, 0) for s in mine) for c in config.CLASSES}
        counts[split] = {"records": sum(s.records for s in mine), "bytes": sum(s.bytes for s in mine),
                         "shards": len(mine), "class_counts": classes}
    return {
        "format": "tfrecord", "features": FEATURE_TYPES, "image_size": image_size, "image_encoding": IMAGE_ENCODING,
        "resize": RESIZE_POLICY, "classes": list(config.CLASSES),
        "shards": [asdict(s) for s in shards], "counts": counts, "failed": failed, "params": params,
    }


def iter_chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
