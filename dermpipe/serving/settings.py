"""The server's settings (what `dermpipe serve`'s options set) and ServingError, the refusal every layer of the
server raises and the app turns into a 4xx/5xx response with a message for the caller."""

from dataclasses import dataclass

from dermpipe import config
from dermpipe.componentkit import param

MIB = 1024 * 1024


@dataclass
class Settings:
    """What the server runs with. A field with help is a `dermpipe serve` option (generated from it: its default and
    help are here only); the others are set by the command itself or by code (grpc_host)."""

    registry_root: str
    model_name: str = param(config.MODEL_NAME, "model to serve")
    max_batch: int = param(32, "most images in one model call")
    max_wait_ms: float = param(5.0, "longest a request waits for others to join its batch")
    max_instances: int = param(64, "most images in one request")
    max_body_bytes: int = param(20 * MIB, "largest request body, MiB")
    max_pixels: int = param(50_000_000, "largest image, width x height (decompression-bomb guard)")
    poll_seconds: float = param(2.0, "how often current.json is checked for a new version")
    log_root: str | None = None  # `dermpipe serve --log-root` [default: $DERMPIPE_HOME/predictions; 'none': off]
    log_images: bool = param(False, "also store the request images")
    flush_seconds: float = param(2.0, "prediction-log flush interval")
    max_explain_instances: int = param(4, "most images in one :explain request (Grad-CAM costs a backward pass)")
    explain_capacity: int = param(2, ":explain requests at a time; more get 429")
    grpc_port: int = param(0, "also serve TF Serving's gRPC API (PredictionService, ModelService, health) on this "
                              "port; 8500 is TF Serving's; 0: off")
    grpc_host: str = "127.0.0.1"
    grpc_max_message_bytes: int = param(64 * MIB, "largest gRPC message either way, MiB (gRPC's default is 4)")
    auth_token_file: str = param("", "bearer tokens, one name:token a line; feedback then needs one [default: "
                                     "$DERMPIPE_SERVE_TOKENS, same entries separated by newlines or commas]")
    auth_predict: bool = param(False, "also require a token for predict, infer, :explain and gRPC Predict")
    auth_rate_per_minute: float = param(120.0, "requests a minute per token, bursts up to as many (429 beyond); "
                                               "0: no limit")
    tls_cert: str = param("", "PEM certificate (chain) for HTTPS and gRPC over TLS; needs --tls-key")
    tls_key: str = param("", "PEM private key of --tls-cert")
    host: str = "127.0.0.1"  # where `dermpipe serve --host` listens: feedback without tokens only on loopback


class ServingError(Exception):
    """A request the server refuses, with the HTTP status and a message for the caller."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}  # e.g. WWW-Authenticate on 401, Retry-After on 429


def tf_error_detail(err: Exception, limit: int = 300) -> str:
    """The line of a TF error that says what went wrong.

    An eager op's error starts with a {{function_node ...}} prefix; a graph call's reads "Graph execution error:",
    then where the node was defined (File lines), then the message, then the node ([[...]]).
    """
    import re

    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    after_trace = max((i for i, line in enumerate(lines) if line.startswith("File ")), default=-1)
    skip = ("[[", "Graph execution error", "Detected at node")
    message = next((line for line in lines[after_trace + 1:] if not line.startswith(skip)), "")
    return re.sub(r"^\{\{[^}]*\}\}\s*", "", message)[:limit] or type(err).__name__
