"""A fake ISIC Archive on loopback: the API v2 endpoints isic-cli calls, signed image URLs with Range, the OAuth
token endpoint a stored `isic user login` is refreshed at, and faults to inject (503, 429 with Retry-After, a stream
cut short). Plus the token file `isic user login` writes, in girder-cli-oauth-client's form and place."""

from __future__ import annotations

import inspect
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

# What records carry on the real Archive: the licence is one of three, the attribution is the contributor's.
LICENCES = (("CC-BY-NC", "Hospital Clínic de Barcelona"), ("CC-0", "Anonymous"),
            ("CC-BY", "ViDIR Group, Department of Dermatology, Medical University of Vienna"))


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: str = ""


@dataclass
class Fault:
    """Answer requests whose path+query contains `match` with `status` (or cut the body short) `times` times."""

    match: str
    status: int = 503
    times: int = 1
    retry_after: str | None = None
    cut: bool = False  # send the headers and half the body, then drop the connection
    hits: list[str] = field(default_factory=list)


class FakeArchive:
    """images/search/ (cursor pages of `page` records), images/search/size/, collections/<id>/, the signed files,
    oauth/token/."""

    def __init__(self, images: dict[str, bytes], diagnoses: dict[str, dict[str, str]], page: int = 4):
        self.images, self.diagnoses, self.page = images, diagnoses, page
        self.seen: list[Seen] = []
        self.faults: list[Fault] = []
        self.tokens: list[dict] = []  # what oauth/token/ answered, in order
        self.refuse_refresh = False
        self.file_delay = 0.0  # seconds before each file's first byte (a storage service's latency)
        self.collections = {"249": {"id": 249, "name": "A public collection", "public": True, "locked": False}}
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def fail(self, match: str, **kwargs) -> Fault:
        fault = Fault(match, **kwargs)
        self.faults.append(fault)
        return fault

    def licence(self, isic_id: str) -> tuple[str, str]:
        return LICENCES[sorted(self.images).index(isic_id) % len(LICENCES)]

    def record(self, isic_id: str) -> dict:
        licence, attribution = self.licence(isic_id)
        return {"isic_id": isic_id, "public": True, "copyright_license": licence, "attribution": attribution,
                "files": {"full": {"url": f"{self.url}/files/{isic_id}.jpg?X-Amz-Signature=s3cr3t",
                                   "size": len(self.images[isic_id])}},
                "metadata": {"acquisition": {"image_type": "dermoscopic"},
                             "clinical": {"age_approx": 45, "sex": "female", "anatom_site_general": "head/neck",
                                          "lesion_id": f"IL_{isic_id[-3:]}", **self.diagnoses[isic_id]}}}

    def requests_to(self, prefix: str) -> list[Seen]:
        return [seen for seen in self.seen if seen.path.startswith(prefix)]

    def search(self, query: dict[str, list[str]]) -> dict:
        ids = sorted(self.images)
        start = int(query.get("cursor", ["0"])[0])
        size = min(int(query.get("limit", [self.page])[0]), self.page)
        more = start + size < len(ids)
        return {"count": len(ids), "results": [self.record(i) for i in ids[start:start + size]],
                "next": f"{self.url}/api/v2/images/search/?cursor={start + size}&limit={size}" if more else None,
                "previous": None}

    def refreshed_token(self, form: dict[str, list[str]]) -> tuple[int, dict]:
        if self.refuse_refresh:
            return 400, {"error": "invalid_grant"}
        token = {"access_token": f"refreshed-{len(self.tokens) + 1}", "token_type": "Bearer", "expires_in": 36000,
                 "refresh_token": f"refresh-{len(self.tokens) + 2}", "scope": "identity"}
        self.tokens.append({"form": form, "token": token})
        return 200, token

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                self._answer("GET")

            def do_POST(self):
                self._answer("POST")

            def _answer(self, method):
                url = urlparse(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                fake.seen.append(Seen(method, url.path, parse_qs(url.query), dict(self.headers.items()), body))
                fault = next((f for f in fake.faults if f.times and f.match in self.path), None)
                if fault is not None and not fault.cut:
                    fault.times -= 1
                    fault.hits.append(self.path)
                    extra = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                    return self._send(fault.status, b'{"detail": "unavailable"}', "application/json", extra)
                if url.path == "/api/v2/images/search/":
                    return self._json(200, fake.search(parse_qs(url.query)))
                if url.path == "/api/v2/images/search/size/":
                    return self._json(200, {"size": sum(len(v) for v in fake.images.values())})
                collection = url.path.removeprefix("/api/v2/collections/").strip("/")
                if url.path.startswith("/api/v2/collections/") and collection in fake.collections:
                    return self._json(200, fake.collections[collection])
                if url.path.startswith("/api/v2/zip-download/license-file/"):  # what `isic image download` saves
                    return self._send(200, f"{url.path.split('/')[-2]} licence text".encode(), "text/plain")
                if url.path == "/oauth/token/" and method == "POST":
                    return self._json(*fake.refreshed_token(parse_qs(body)))
                if url.path.startswith("/files/") and Path(url.path).stem in fake.images:
                    return self._file(fake.images[Path(url.path).stem], fault)
                return self._json(404, {"detail": "Not found."})

            def _file(self, data, fault):
                time.sleep(fake.file_delay)
                rng = self.headers.get("Range", "")
                start = int(rng.split("=")[1].split("-")[0]) if rng else 0
                status = 206 if rng else 200
                if fault is not None:  # a cut: announce the whole rest, send half of it, drop the connection
                    fault.times -= 1
                    fault.hits.append(self.path)
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(data) - start))
                    self.end_headers()
                    self.wfile.write(data[start:start + (len(data) - start) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                return self._send(status, data[start:], "image/jpeg")

            def _json(self, status, value):
                return self._send(status, json.dumps(value).encode(), "application/json")

            def _send(self, status, body, content_type, headers=None):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

        return Handler

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def isic_cli_client_id() -> str:
    """The OAuth client id isic-cli logs in with (its get_oauth_client's default)."""
    from isic_cli.oauth import get_oauth_client

    return inspect.signature(get_oauth_client).parameters["client_id"].default


def token_file(xdg_data_home: Path, host: str = "127.0.0.1") -> Path:
    """Where `isic user login` keeps the token: girder-cli-oauth-client's XDG data folder, per host and client id."""
    return xdg_data_home / "girder_cli_oauth_client" / host / isic_cli_client_id() / "token.json"


def write_isic_login(xdg_data_home: Path, access_token: str, *, expires_in: int = 36000,
                     host: str = "127.0.0.1") -> Path:
    """The token.json `isic user login` writes (authlib's OAuth2Token as girder-cli-oauth-client dumps it)."""
    path = token_file(xdg_data_home, host)
    path.parent.mkdir(parents=True, exist_ok=True)
    token = {"access_token": access_token, "expires_in": 36000, "token_type": "Bearer", "scope": "identity",
             "refresh_token": "refresh-1", "expires_at": int(time.time()) + expires_in}
    path.write_text(json.dumps(token, indent=4))
    return path


def isolate_isic_login(monkeypatch, xdg_data_home: Path) -> None:
    """This process reads (and a refresh writes) the login under xdg_data_home: XDG_DATA_HOME for child processes,
    and the value pyxdg read from it when it was imported, for this one; no ISIC_TOKEN."""
    import xdg.BaseDirectory

    monkeypatch.setenv("XDG_DATA_HOME", str(xdg_data_home))
    monkeypatch.setattr(xdg.BaseDirectory, "xdg_data_home", str(xdg_data_home))
    monkeypatch.delenv("ISIC_TOKEN", raising=False)
