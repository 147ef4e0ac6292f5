"""Patient metadata as a second model input (optional metadata fusion, the ISIC 2019 winners' recipe).

One encoding, inside the Keras model: the layer `MetadataEncoding` ("metadata_encoding") turns the raw values
(age_approx: float, NaN or negative = missing; sex and anatom_site_general: strings, "" = missing) into a fixed
vector of `ENCODED_WIDTH` floats:

| columns | value |
|---|---|
| age | age_approx / 100 (0 when missing) |
| age_missing | 1 when age_approx is missing |
| sex=male, sex=female, sex=unknown | one-hot over config.SEXES plus "unknown" (missing or another value) |
| site=<site> ... site=unknown | one-hot over config.SITES plus "unknown" |

Strings are compared after strip + lower-case. Because the encoding is part of the model, model.keras and the exported
SavedModel both take the raw values: training, evaluation, explanation, profiling and serving cannot encode
differently. The layer uses string ops, which XLA cannot compile: Keras trains a fusion model without jit_compile.

A fusion model's inputs are a dict {"image", "age_approx", "sex", "anatom_site_general"} (`MODEL_INPUTS`); every
stage builds it with `model_inputs` / `attach_metadata` from the raw columns of a split table (`raw_columns`).
`coverage` counts missing and unknown values per column, for the training report.
"""

from __future__ import annotations

from collections.abc import Mapping

import keras
import numpy as np
import pandas as pd

from dermpipe import config

IMAGE_INPUT = "image"
METADATA_INPUTS: tuple[str, ...] = ("age_approx", "sex", "anatom_site_general")
MODEL_INPUTS: tuple[str, ...] = (IMAGE_INPUT, *METADATA_INPUTS)
ENCODING_LAYER = "metadata_encoding"
AGE_SCALE = 100.0
VOCABULARIES: dict[str, tuple[str, ...]] = {"sex": config.SEXES, "anatom_site_general": config.SITES}
FEATURE_NAMES: tuple[str, ...] = (
    "age", "age_missing",
    *(f"sex={v}" for v in (*config.SEXES, "unknown")),
    *(f"site={v}" for v in (*config.SITES, "unknown")),
)
ENCODED_WIDTH = len(FEATURE_NAMES)


@keras.saving.register_keras_serializable(package="dermpipe")
class MetadataEncoding(keras.layers.Layer):
    """{"age_approx": float [N], "sex": string [N], "anatom_site_general": string [N]} -> float32 [N, ENCODED_WIDTH]
    (see the module docstring). Always float32 (under mixed precision too); no weights."""

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.supports_jit = False  # string comparisons: XLA cannot compile them

    def call(self, inputs):
        import tensorflow as tf

        age = tf.reshape(tf.cast(inputs["age_approx"], tf.float32), [-1])
        missing = tf.logical_or(tf.math.is_nan(age), age < 0.0)
        parts = [tf.where(missing, tf.zeros_like(age), age / AGE_SCALE)[:, None], tf.cast(missing, tf.float32)[:, None]]
        for key, vocabulary in VOCABULARIES.items():
            text = tf.strings.lower(tf.strings.strip(tf.reshape(tf.convert_to_tensor(inputs[key]), [-1])))
            hot = tf.cast(tf.equal(text[:, None], tf.constant(vocabulary)[None, :]), tf.float32)
            parts += [hot, 1.0 - tf.reduce_sum(hot, axis=1, keepdims=True)]
        return tf.concat(parts, axis=1)

    def compute_output_shape(self, input_shape):
        return (None, ENCODED_WIDTH)


def metadata_keras_inputs() -> dict[str, keras.KerasTensor]:
    """The three raw metadata inputs of a fusion model: age_approx float32 [N], sex and site strings [N]."""
    return {"age_approx": keras.Input((), dtype="float32", name="age_approx"),
            "sex": keras.Input((), dtype="string", name="sex"),
            "anatom_site_general": keras.Input((), dtype="string", name="anatom_site_general")}


def encode_metadata(age_approx, sex, anatom_site_general) -> np.ndarray:
    """The encoding of raw values (sequences of equal length; None/NaN/-1/"" = missing) as a numpy array [N, W],
    computed by the model's own layer."""
    values = raw_values(age_approx, sex, anatom_site_general)
    return np.asarray(MetadataEncoding()(values))


def raw_values(age_approx, sex, anatom_site_general) -> dict[str, np.ndarray]:
    """Raw metadata as the model takes it: age float32 (NaN for missing), sex/site str ("" for missing)."""
    ages = np.asarray([np.nan if _missing(a) else float(a) for a in age_approx], dtype=np.float32)
    return {"age_approx": ages, "sex": _strings(sex), "anatom_site_general": _strings(anatom_site_general)}


def raw_columns(table: pd.DataFrame) -> dict[str, np.ndarray]:
    """The raw metadata of a split table (columns age_approx, sex, anatom_site_general; an absent column is all
    missing), in row order."""
    n = len(table)
    column = {k: (table[k].tolist() if k in table.columns else [None] * n) for k in METADATA_INPUTS}
    return raw_values(column["age_approx"], column["sex"], column["anatom_site_general"])


def _missing(value) -> bool:
    if value is None or isinstance(value, str):
        return value is None or value.strip() == ""
    try:
        return bool(np.isnan(float(value)))
    except (TypeError, ValueError):
        return True


def _strings(values) -> np.ndarray:
    return np.asarray(["" if v is None or (not isinstance(v, str) and _missing(v)) else str(v) for v in values],
                      dtype=object).astype(str)


def takes_metadata(model) -> bool:
    """Whether a Keras model (a fusion model) takes the metadata inputs beside the image."""
    return {t.name.split(":")[0] for t in model.inputs} >= set(METADATA_INPUTS)


def image_size(model) -> int:
    """The image resolution of a dermpipe classifier, single-input or fusion."""
    for tensor in model.inputs:
        if len(tensor.shape) == 4:
            return int(tensor.shape[1])
    raise ValueError(f"model {model.name}: no image input (a [N, S, S, 3] tensor) among {model.inputs}")


def model_inputs(model, pixels, metadata: Mapping[str, np.ndarray] | None):
    """What to call `model` with: the pixels alone, or {"image": pixels, **metadata} for a fusion model (metadata
    missing when not given: the model then sees every value as unknown)."""
    if not takes_metadata(model):
        return pixels
    n = len(pixels)
    metadata = metadata if metadata is not None else raw_values([None] * n, [None] * n, [None] * n)
    return {IMAGE_INPUT: pixels, **{k: metadata[k] for k in METADATA_INPUTS}}


def attach_metadata(images, table: pd.DataFrame, batch_size: int):
    """A dataset of image batches (in table order) -> batches of {"image": ..., **raw metadata} for a fusion model."""
    import tensorflow as tf

    meta = tf.data.Dataset.from_tensor_slices(raw_columns(table)).batch(batch_size)
    return tf.data.Dataset.zip((images, meta)).map(lambda x, m: {IMAGE_INPUT: x, **m})


def coverage(table: pd.DataFrame) -> dict[str, int]:
    """Counts of what the encoding sees as missing or unknown in a split table: rows, age_missing, sex_missing,
    sex_unknown (a value outside config.SEXES), site_missing, site_unknown (outside config.SITES)."""
    raw = raw_columns(table)
    ages = raw["age_approx"]
    counts = {"rows": len(table), "age_missing": int((np.isnan(ages) | (ages < 0)).sum())}
    for key, short in (("sex", "sex"), ("anatom_site_general", "site")):
        text = pd.Series(raw[key]).str.strip().str.lower()
        missing = text == ""
        counts[f"{short}_missing"] = int(missing.sum())
        counts[f"{short}_unknown"] = int((~missing & ~text.isin(VOCABULARIES[key])).sum())
    return counts


def unknown_values(table: pd.DataFrame, limit: int = 10) -> dict[str, list[str]]:
    """Up to `limit` distinct out-of-vocabulary values per categorical column (encoded as unknown), for the report."""
    raw = raw_columns(table)
    found = {}
    for key in VOCABULARIES:
        text = pd.Series(raw[key]).str.strip().str.lower()
        odd = sorted(set(text[(text != "") & ~text.isin(VOCABULARIES[key])]))
        if odd:
            found[key] = odd[:limit]
    return found
