"""The pydantic request and response models of the HTTP API (they are the OpenAPI schema's components, so their names
and docstrings are part of the API: a docstring here becomes a schema description)."""

from typing import Any

from pydantic import BaseModel, ConfigDict


class B64(BaseModel):
    model_config = ConfigDict(extra="forbid")
    b64: str


class Instance(BaseModel):
    model_config = ConfigDict(extra="forbid")
    b64: str | None = None
    image_bytes: B64 | None = None
    age_approx: float | None = None
    sex: str | None = None
    anatom_site_general: str | None = None
    lesion_id: str | None = None  # optional grouping, logged for retraining on feedback labels (not a model input)
    patient_id: str | None = None


class PredictRequest(BaseModel):
    """TF Serving REST predict: row format `instances` or columnar `inputs`."""

    model_config = ConfigDict(extra="forbid")
    signature_name: str | None = None
    operating_point: str | None = None  # a stored operating point by name (default: the version's own)
    instances: list[Instance] | None = None
    inputs: list[Instance] | dict[str, list[B64] | list[float | None] | list[str | None]] | None = None


class Prediction(BaseModel):
    """The probabilities, and the decision at an operating point: refer_melanoma | routine | out_of_distribution
    (null, with the other clinical fields, for a version deployed without clinical.json; null with decision_reason when
    the operating point is not achievable by the model), and decision_reason: why, in one line (melanoma_threshold
    applies to the calibrated melanoma probability, not to probabilities.MEL)."""

    predicted_class: str
    confidence: float
    probabilities: dict[str, float]
    decision: str | None = None
    decision_reason: str | None = None
    operating_point: str | None = None
    melanoma_threshold: float | None = None
    ood_score: float | None = None
    ood_threshold: float | None = None


class PredictFileResponse(Prediction):
    request_id: str
    model_name: str
    model_version: int
    gate_override: bool = False  # the version was deployed by a person's override of the gate, not blessed by it


class V2Tensor(BaseModel):
    """An input tensor of an Open Inference Protocol (v2) request: `data` in JSON, or parameters.binary_data_size
    bytes of the body after the JSON header (Triton's binary tensor data extension)."""

    model_config = ConfigDict(extra="forbid")
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, bool | int | float | str] | None = None
    data: list[Any] | None = None


class V2RequestedOutput(BaseModel):
    """An output the caller wants, and whether as binary data (parameters.binary_data)."""

    model_config = ConfigDict(extra="forbid")
    name: str
    parameters: dict[str, bool | int | float | str] | None = None


class V2InferRequest(BaseModel):
    """Open Inference Protocol (v2) infer request: image_bytes (BYTES [N], base64 strings in JSON or raw bytes as
    binary data) and, optionally, age_approx (FP32 [N]), sex and anatom_site_general (BYTES [N])."""

    model_config = ConfigDict(extra="forbid")
    id: str | None = None
    parameters: dict[str, bool | int | float | str] | None = None
    inputs: list[V2Tensor]
    outputs: list[V2RequestedOutput] | None = None
