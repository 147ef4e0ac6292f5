"""The served model's inputs and outputs by the names both tensor protocols give them (the Open Inference
Protocol's tensors and TF Serving gRPC's TensorProtos), and one image's checked metadata from per-input values: what
dermpipe.serving.open_inference and grpc_server share without importing each other."""

import math

from dermpipe.serving.images import GROUPING_FIELDS, check_grouping, check_metadata
from dermpipe.serving.settings import ServingError

IMAGE_INPUT = "image_bytes"
OUTPUTS = ("probabilities", "embedding")
# a version with clinical.json answers these too, one element per image; BYTES are texts, FP32 numbers (None: NaN)
CLINICAL_OUTPUTS = {"decision": "BYTES", "decision_reason": "BYTES", "operating_point": "BYTES",
                    "melanoma_threshold": "FP32", "ood_score": "FP32"}


def image_metadata(values: dict[str, list], i: int) -> dict:
    """Image i's checked metadata from per-input values (bytes or str texts, float ages; NaN or < 0: unknown)."""
    age = values["age_approx"][i] if "age_approx" in values else None
    if age is not None and (math.isnan(age) or age < 0):
        age = None
    texts = {}
    for key in ("sex", "anatom_site_general", *GROUPING_FIELDS):
        raw = values[key][i] if key in values else ""
        try:
            texts[key] = (raw.decode() if isinstance(raw, bytes) else raw) or None
        except UnicodeDecodeError:
            raise ServingError(400, f"input {key}: element {i} is not UTF-8 text") from None
    return {**check_metadata(age, texts["sex"], texts["anatom_site_general"], f"image {i}"),
            **check_grouping(texts["lesion_id"], texts["patient_id"], f"image {i}")}
