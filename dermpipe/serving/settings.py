"""The server's settings (what `dermpipe serve`'s options set) and ServingError, the refusal every layer of the
server raises and the app turns into a 4xx/5xx response with a message for the caller."""

from dataclasses import dataclass

from dermpipe import config


@dataclass
class Settings:
    registry_root: str
    model_name: str = config.MODEL_NAME
    max_batch: int = 32
    max_wait_ms: float = 5.0
    max_instances: int = 64
    max_body_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 50_000_000
    poll_seconds: float = 2.0
    log_root: str | None = None
    log_images: bool = False
    flush_seconds: float = 2.0
    max_explain_instances: int = 4  # images per :explain request (each costs a backward pass)
    explain_capacity: int = 2  # :explain requests at a time; 429 beyond
    grpc_port: int = 0  # TF Serving's gRPC API on this port (TF Serving's is 8500); 0: off
    grpc_host: str = "127.0.0.1"
    grpc_max_message_bytes: int = 64 * 1024 * 1024  # gRPC's default is 4 MiB; dermoscopy originals are larger


class ServingError(Exception):
    """A request the server refuses, with the HTTP status and a message for the caller."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


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
