"""The peer of the goodput benchmark (benchmarks/serving_goodput.py): a minimal custom MLServer 1.7 runtime serving
dermpipe's SavedModel, and the settings files MLServer starts from.

The runtime does what dermpipe serve does for a request, all in TensorFlow: the SavedModel's serving_default
signature decodes and resizes the JPEG bytes and runs the model, one call per batch that MLServer's adaptive
batching (max_batch_size, max_batch_time) forms. The JPEG bytes travel base64 in the v2 JSON body (MLServer's
Base64Codec: its REST API has no binary tensor extension). This module is imported by MLServer inside its own
virtual environment (.venv-mlserver, `make .venv-mlserver`): MLServer pins FastAPI below dermpipe's."""

from __future__ import annotations

import json
from pathlib import Path

RUNTIME = "serving_mlserver.SavedModelBytesRuntime"


def write_settings(folder: Path, *, model_name: str, saved_model: Path, http_port: int, grpc_port: int,
                   metrics_port: int, max_batch: int, max_wait_ms: float) -> Path:
    """settings.json (server) and model-settings.json (the model) for `mlserver start folder`: inference in the
    server's own process (parallel_workers 0: the server has one core, a worker pool would only add a hop)."""
    folder.mkdir(parents=True, exist_ok=True)
    server = {"http_port": http_port, "grpc_port": grpc_port, "metrics_port": metrics_port,
              "parallel_workers": 0, "debug": False}
    model = {"name": model_name, "implementation": RUNTIME, "max_batch_size": max_batch,
             "max_batch_time": max_wait_ms / 1000, "parameters": {"uri": str(saved_model)}}
    (folder / "settings.json").write_text(json.dumps(server, indent=1))
    (folder / "model-settings.json").write_text(json.dumps(model, indent=1))
    return folder


try:  # only inside MLServer's environment; dermpipe's imports the settings writer above
    from mlserver import MLModel
except ImportError:  # pragma: no cover - dermpipe's environment
    MLModel = None

if MLModel is not None:
    import tensorflow as tf
    from mlserver.codecs import Base64Codec, NumpyCodec
    from mlserver.errors import InferenceError
    from mlserver.types import InferenceRequest, InferenceResponse

    class SavedModelBytesRuntime(MLModel):
        """v2 infer: input `image_bytes` (BYTES, base64 JPEGs, one per row) -> output `probabilities` (FP32)."""

        async def load(self) -> bool:
            self._serve = tf.saved_model.load(self.settings.parameters.uri).signatures["serving_default"]
            return True

        async def predict(self, payload: InferenceRequest) -> InferenceResponse:
            by_name = {tensor.name: tensor for tensor in payload.inputs}
            if "image_bytes" not in by_name:
                raise InferenceError(f"input 'image_bytes' (BYTES, base64 JPEGs) missing; got {sorted(by_name)}")
            images = Base64Codec.decode_input(by_name["image_bytes"])
            probabilities = self._serve(image_bytes=tf.constant(images))["probabilities"].numpy()
            return InferenceResponse(model_name=self.name, id=payload.id,
                                     outputs=[NumpyCodec.encode_output("probabilities", probabilities)])
