"""Drift features of an image, computed by the same code for the reference profile and for current traffic.

One row per image:
    predicted_class, confidence          the model's answer (class name, top probability)
    STAT_COLUMNS                         dermpipe.data.image_stats (brightness, contrast, ..., width, height,
                                         aspect)
    age_approx, sex, anatom_site_general metadata (null when unknown)
    emb_0 .. emb_{k-1}                   the "pool" embedding projected on the training set's PCA (embedding_pca.npz)

The reference profile (`reference_profile.parquet`) holds these columns plus `image` and `split`; the prediction
log (`dermpipe serve`) holds them plus timestamp/request_id/model_*/probabilities. The profile's files and the
embedding PCA: dermpipe.model.profile.reference.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dermpipe import config
from dermpipe.data.image_stats import STAT_COLUMNS, header_size, pixel_statistics, statistics_rows
from dermpipe.data.schema import IMAGE_SUFFIXES
from dermpipe.model.export import EMBEDDING_LAYER
from dermpipe.model.profile.reference import DEFAULT_COMPONENTS, EmbeddingPCA
from dermpipe.storage import read_bytes

METADATA_NUMERIC: tuple[str, ...] = ("age_approx",)
METADATA_CATEGORICAL: tuple[str, ...] = ("sex", "anatom_site_general")
PREDICTION_CATEGORICAL: tuple[str, ...] = ("predicted_class",)
PREDICTION_NUMERIC: tuple[str, ...] = ("confidence",)
# Column names other data sets use for the same metadata (ISIC 2020's metadata.csv among them).
METADATA_ALIASES = {"image_name": "image", "isic_id": "image", "anatom_site_general_challenge": "anatom_site_general",
                    "age": "age_approx"}


def embedding_columns(n_components: int) -> list[str]:
    return [f"emb_{i}" for i in range(n_components)]


def numeric_columns(n_components: int) -> list[str]:
    return [*STAT_COLUMNS, *METADATA_NUMERIC, *PREDICTION_NUMERIC, *embedding_columns(n_components)]


def categorical_columns() -> list[str]:
    return [*METADATA_CATEGORICAL, *PREDICTION_CATEGORICAL]


def feature_columns(n_components: int) -> list[str]:
    """Every drift feature, in the profile's column order."""
    return [*PREDICTION_CATEGORICAL, *PREDICTION_NUMERIC, *STAT_COLUMNS, *METADATA_NUMERIC, *METADATA_CATEGORICAL,
            *embedding_columns(n_components)]


def normalize_metadata(table: pd.DataFrame) -> pd.DataFrame:
    """image, age_approx (float), sex, anatom_site_general (lower-case strings, null when unknown).

    Values outside ISIC 2019's vocabularies are kept as they are: a new site name in traffic is drift to report.
    """
    table = table.rename(columns={k: v for k, v in METADATA_ALIASES.items() if k in table.columns
                                  and v not in table.columns})
    out = pd.DataFrame(index=table.index)
    out["image"] = table["image"].astype(str).map(image_key) if "image" in table.columns else None
    out["age_approx"] = pd.to_numeric(table.get("age_approx"), errors="coerce") if "age_approx" in table else np.nan
    for column in METADATA_CATEGORICAL:
        values = table[column] if column in table.columns else pd.Series(None, index=table.index, dtype=object)
        cleaned = values.astype("string").str.strip().str.lower()
        out[column] = cleaned.where(cleaned.notna() & (cleaned != "") & (cleaned != "nan")).astype(object)
        out[column] = out[column].where(out[column].notna(), None)
    return out


def image_key(name: str) -> str:
    """The join key of an image: file stem without ISIC's `_downsampled` suffix."""
    stem = Path(name).stem
    return stem.removesuffix("_downsampled")


def list_images(folder: Path) -> list[Path]:
    """Image files under a folder (any depth), sorted; raises if there are none."""
    paths = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise FileNotFoundError(f"{folder}: no .jpg/.jpeg/.png images found (searched all sub-folders)")
    return paths


@dataclass(frozen=True)
class ImageOutputs:
    """What one decode of each image yields: statistics always, the model's outputs when a model was given."""

    stats: pd.DataFrame  # STAT_COLUMNS; index = position in `paths` of each image that decoded
    failed: list[tuple[str, str]]  # (path, error) of the images that did not
    probabilities: np.ndarray | None = None  # [len(stats), classes], rows aligned with stats
    embeddings: np.ndarray | None = None  # [len(stats), D]: the image's "pool" embedding (before any fusion)


def _decode_file(path: Path | str, image_size: int) -> tuple[np.ndarray, tuple[int, int]]:
    """(float32 pixels [S, S, 3] as the model sees them, the original (width, height)); a broken file raises."""
    from dermpipe.data.images import bytes_decoder

    data = read_bytes(str(path))
    return bytes_decoder(image_size)(data).numpy(), header_size(data)


def decode_images(paths: Sequence[Path | str], image_size: int, model=None, metadata: pd.DataFrame | None = None,
                  batch_size: int = 64, workers: int | None = None) -> ImageOutputs:
    """Read and decode each image once (imagedata.decode_resize_bytes, as in training and serving) and compute its
    statistics, and the model's probabilities and embedding when `model` is given, from the same pixels.

    Files decode in parallel threads (TensorFlow's kernels release the GIL), one batch ahead of the model. A file
    that fails to read or decode is listed in `failed`, never fatal. A metadata-fusion model also gets
    age_approx/sex/anatom_site_general from `metadata` (rows aligned with `paths`; None: every value unknown)."""
    run, fusion = _batch_function(model)
    raw = None
    if fusion:
        from dermpipe.model.metadata_inputs import raw_columns

        raw = raw_columns(metadata if metadata is not None else pd.DataFrame(index=range(len(paths))))
    chunks = [range(start, min(start + batch_size, len(paths))) for start in range(0, len(paths), batch_size)]
    kept: list[int] = []
    stat_rows: list[dict[str, float]] = []
    failed: list[tuple[str, str]] = []
    probabilities, embeddings = [], []
    with ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
        def submit(chunk: range) -> list[tuple[int, Future]]:
            return [(i, pool.submit(_decode_file, paths[i], image_size)) for i in chunk]

        pending = submit(chunks[0]) if chunks else []
        for k in range(len(chunks)):
            current, pending = pending, (submit(chunks[k + 1]) if k + 1 < len(chunks) else [])
            good, pixels, sizes = [], [], []
            for i, future in current:
                try:
                    image, size = future.result()
                except Exception as err:  # a broken file is counted and listed, never fatal for the whole analysis
                    failed.append((str(paths[i]), f"{type(err).__name__}: {err}"))
                    continue
                good.append(i)
                pixels.append(image)
                sizes.append(size)
            if not good:
                continue
            outputs = run(np.stack(pixels), _metadata_rows(raw, good))
            kept += good
            stat_rows += statistics_rows(outputs["stats"].numpy(), sizes)
            if model is not None:
                probabilities.append(outputs["probabilities"].numpy().astype(np.float32))
                embeddings.append(outputs["embedding"].numpy().astype(np.float32))
    stats = pd.DataFrame(stat_rows, index=kept, columns=list(STAT_COLUMNS))
    if model is None:
        return ImageOutputs(stats, failed)
    width = int(model.output.shape[-1]), int(model.get_layer(EMBEDDING_LAYER).output.shape[-1])
    return ImageOutputs(stats, failed,
                        np.concatenate(probabilities) if probabilities else np.zeros((0, width[0]), np.float32),
                        np.concatenate(embeddings) if embeddings else np.zeros((0, width[1]), np.float32))


def _batch_function(model):
    """(one traced function: pixels [N, S, S, 3], metadata dict -> {"stats"[, "probabilities", "embedding"]},
    whether the model takes metadata). Traced, the model runs about twice as fast as called eagerly on a CPU."""
    import keras
    import tensorflow as tf

    from dermpipe.model.metadata_inputs import IMAGE_INPUT, takes_metadata

    if model is None:
        return tf.function(lambda pixels, extra: {"stats": pixel_statistics(pixels)}, reduce_retracing=True), False
    fusion = takes_metadata(model)
    heads = keras.Model(model.input, [model.output, model.get_layer(EMBEDDING_LAYER).output])

    @tf.function(reduce_retracing=True)
    def run(pixels, extra):
        probabilities, embedding = heads({IMAGE_INPUT: pixels, **extra} if fusion else pixels, training=False)
        return {"stats": pixel_statistics(pixels), "probabilities": probabilities, "embedding": embedding}

    return run, fusion


def _metadata_rows(raw: dict[str, np.ndarray] | None, rows: list[int]) -> dict:
    """The metadata of these rows as tensors (strings must become tf.string), or {} for an image-only model."""
    if raw is None:
        return {}
    import tensorflow as tf

    return {key: tf.constant(values[rows]) for key, values in raw.items()}


def statistics_table(paths: Sequence[Path | str], image_size: int) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """STAT_COLUMNS of each image as a model of input size image_size sees it (index = position in paths) and the
    (path, error) of those that failed to decode."""
    outputs = decode_images(paths, image_size)
    return outputs.stats, outputs.failed


def model_outputs(model, paths: Sequence[Path | str], batch_size: int = 64,
                  metadata: pd.DataFrame | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities [N, C], embedding [N, D]) of a dermpipe Keras classifier, images decoded as in training;
    ValueError naming the files when any image fails to decode. `metadata`: see decode_images."""
    from dermpipe.model.metadata_inputs import image_size

    outputs = decode_images(paths, image_size(model), model, metadata, batch_size)
    if outputs.failed:
        raise ValueError(failed_message(outputs.failed, len(paths)))
    return outputs.probabilities, outputs.embeddings


def failed_message(failed: list[tuple[str, str]], total: int) -> str:
    """How many images failed and the first five (path: error), for an error a person reads."""
    listed = "; ".join(f"{path}: {error}" for path, error in failed[:5])
    return f"{len(failed)} of {total} images could not be read or decoded (first: {listed})"


def prediction_columns(probabilities: np.ndarray, classes: Sequence[str] = config.CLASSES) -> pd.DataFrame:
    probabilities = np.asarray(probabilities)
    return pd.DataFrame({"predicted_class": np.asarray(classes, dtype=object)[probabilities.argmax(axis=1)],
                         "confidence": probabilities.max(axis=1).astype(float)})


def embedding_frame(projected: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(np.asarray(projected, float), columns=embedding_columns(projected.shape[1]))


def assemble(stats: pd.DataFrame, metadata: pd.DataFrame, predictions: pd.DataFrame | None,
             embedding: pd.DataFrame | None, n_components: int) -> pd.DataFrame:
    """One frame with feature_columns(n_components) (all rows aligned by position); absent parts are null."""
    n = len(stats)
    parts = [df.reset_index(drop=True) for df in (stats, metadata, predictions, embedding) if df is not None]
    table = pd.concat(parts, axis=1)
    for column in feature_columns(n_components):
        if column not in table.columns:
            table[column] = None if column in categorical_columns() else np.nan
    if len(table) != n:
        raise ValueError(f"feature parts disagree on the number of images: {n} statistics rows, {len(table)} total")
    extra = [c for c in ("image",) if c in table.columns]
    return table[[*extra, *feature_columns(n_components)]]


def image_features(paths: Sequence[Path | str], metadata: pd.DataFrame | None = None, *, image_size: int, model=None,
                   pca: EmbeddingPCA | None = None, n_components: int = DEFAULT_COMPONENTS,
                   ) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """Features of image files: statistics always (at image_size, the model's input size), metadata when given
    (joined on image_key), predictions and embedding when a model (and PCA) is given. Returns (features,
    [(path, error) of images that failed])."""
    keys = pd.DataFrame({"image": [image_key(str(p)) for p in paths]})
    if metadata is not None and not metadata.empty:
        meta = normalize_metadata(metadata).drop_duplicates("image")
        joined = keys.merge(meta, on="image", how="left")
    else:
        joined = normalize_metadata(keys)
    outputs = decode_images(paths, image_size, model, joined)
    stats, failed = outputs.stats, outputs.failed
    joined = joined.iloc[stats.index].reset_index(drop=True)
    predictions = embedding = None
    if outputs.probabilities is not None:
        predictions = prediction_columns(outputs.probabilities)
        if pca is not None:
            embedding = embedding_frame(pca.project(outputs.embeddings))
            n_components = pca.n_components
    return assemble(stats, joined, predictions, embedding, n_components), failed


def log_features(records: pd.DataFrame, n_components: int) -> pd.DataFrame:
    """The feature columns of prediction-log records (missing columns become null)."""
    table = records.copy()
    meta = normalize_metadata(table[[c for c in (*METADATA_NUMERIC, *METADATA_CATEGORICAL) if c in table.columns]])
    for column in (*METADATA_NUMERIC, *METADATA_CATEGORICAL):
        table[column] = meta[column]
    for column in feature_columns(n_components):
        if column not in table.columns:
            table[column] = None if column in categorical_columns() else np.nan
    numeric = numeric_columns(n_components)
    table[numeric] = table[numeric].apply(pd.to_numeric, errors="coerce")
    return table[feature_columns(n_components)].reset_index(drop=True)


def read_metadata_csv(path: Path | str | None) -> pd.DataFrame | None:
    if path is None or str(path) == "":
        return None
    table = pd.read_csv(io.BytesIO(read_bytes(str(path))))
    columns = set(table.columns)
    if not ({"image"} | {k for k, v in METADATA_ALIASES.items() if v == "image"}) & columns:
        raise ValueError(f"{path}: no image column; expected 'image' (ISIC 2019) or 'image_name' (ISIC 2020) "
                         f"beside age_approx/sex/anatom_site_general; found {sorted(columns)}")
    return table


def n_components_of(columns: Iterable[str]) -> int:
    return sum(1 for c in columns if c.startswith("emb_") and c[4:].isdigit())
