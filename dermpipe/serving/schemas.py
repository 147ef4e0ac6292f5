"""The pydantic request and response models of the HTTP API (they are the OpenAPI schema's components, so their names
and docstrings are part of the API: a docstring here becomes a schema description)."""

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


class PredictRequest(BaseModel):
    """TF Serving REST predict: row format `instances` or columnar `inputs`."""

    model_config = ConfigDict(extra="forbid")
    signature_name: str | None = None
    instances: list[Instance] | None = None
    inputs: list[Instance] | dict[str, list[B64] | list[float | None] | list[str | None]] | None = None


class Prediction(BaseModel):
    predicted_class: str
    confidence: float
    probabilities: dict[str, float]


class PredictFileResponse(Prediction):
    request_id: str
    model_name: str
    model_version: int
