"""BodyLimit, the ASGI middleware around the app: it caps the request body (413 beyond --max-body-mb) before any
route reads it, and reports each request's route, status and latency to the telemetry."""

import time


class BodyLimit:
    """ASGI middleware: read the whole body up to max_bytes (413 beyond), then hand it on; observe(scope, status,
    seconds) after each request (pure ASGI: cheaper than Starlette's BaseHTTPMiddleware)."""

    def __init__(self, app, max_bytes: int, observe=None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.observe = observe or (lambda scope, status, seconds: None)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), [0]

        async def send_observed(message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self._limited(scope, receive, send_observed)
        finally:
            self.observe(scope, status[0], time.perf_counter() - started)

    async def _limited(self, scope, receive, send) -> None:
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > self.max_bytes
            except ValueError:
                await _plain_error(send, 400, f"Content-Length {declared!r} is not a number")
                return
            if too_big:
                await _plain_error(send, 413, f"body of {int(declared)} bytes is over the limit of "
                                              f"{self.max_bytes} bytes (--max-body-mb)")
                return
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.max_bytes:
                await _plain_error(send, 413, f"body is over the limit of {self.max_bytes} bytes (--max-body-mb)")
                return
        body, sent = b"".join(chunks), False

        async def replay():
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


async def _plain_error(send, status: int, message: str) -> None:
    import json

    payload = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})

