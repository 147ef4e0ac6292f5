"""The ISIC Archive through isic-cli: its stored login, its retrying session, its listing, count and size calls.

Credentials, in order: ISIC_TOKEN (sent as `Authorization: Bearer ...`); else the token `isic user login` stored
(girder-cli-oauth-client's token.json under $XDG_DATA_HOME, keyed on the Archive's host), refreshed when expired and
saved back exactly as isic-cli does; else none (public images only). ISIC_API_URL points the listing, the stored
login's host and therefore its token file at another Archive (a sandbox, a test server).

Every request goes through isic-cli's session (429/500/502/503/504 retried with its backoff and the server's
Retry-After) with one change: the waits of one request add up to at most DERMPIPE_ISIC_MAX_WAIT_S seconds (600 by
default), then it fails naming the request. Image files are fetched without the token (their URLs are signed, as
isic-cli does) and resumed by dermpipe's download cache from the bytes already on disk (isic-cli restarts them).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO
from urllib.parse import urlsplit, urlunsplit

from urllib3.exceptions import MaxRetryError
from urllib3.util.retry import Retry

DEFAULT_API = "https://api.isic-archive.com/api/v2/"
MAX_WAIT_ENV = "DERMPIPE_ISIC_MAX_WAIT_S"
DEFAULT_MAX_WAIT_S = 600.0
STREAM_RESUMES = 3  # a connection dropped mid-file is resumed from the bytes written, this many times per file
BLOCK = 1 << 16  # what a dropped stream can lose: urllib3 discards a block it could not read whole


class IsicSourceError(ValueError):
    """The ISIC Archive could not be listed or an image fetched, or the login is unusable; the message names the
    request (never a token or a signed URL's signature) and what to do."""


class WaitBudgetSpent(MaxRetryError):
    """The next retry would take one request's waits past the budget: give up now, naming the request."""

    def __init__(self, retry: Retry, wait: float, budget: float, waited: float) -> None:
        last = retry.history[-1] if retry.history else None
        if last is not None and last.status:
            answer = f"answered {last.status}"
        else:  # a connection error: its type and text name the host, never the path or its signature
            answer = f"failed ({type(last.error).__name__}: {last.error})" if last and last.error else "failed"
        self.message = (f"{answer} {len(retry.history)} time(s); the next retry would wait {wait:.0f} s more after "
                        f"{waited:.0f} s of waiting, past the {budget:.0f} s budget ({MAX_WAIT_ENV})")
        super().__init__(None, (last.url if last else "") or "", self.message)  # type: ignore[arg-type]


class BoundedRetry(Retry):
    """isic-cli's retry strategy whose sleeps for one request sum to at most `max_wait` seconds."""

    def __init__(self, *args: Any, max_wait: float = DEFAULT_MAX_WAIT_S, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_wait, self.waited = max_wait, 0.0  # waited: carried from retry to retry by new()

    def new(self, **kw: Any) -> BoundedRetry:
        retry = super().new(**kw)
        retry.max_wait, retry.waited = self.max_wait, self.waited
        return retry

    def planned_wait(self, response: Any = None) -> float:
        """What sleep() would wait: the server's Retry-After when it sends one, else the exponential backoff."""
        if self.respect_retry_after_header and response is not None:
            after = self.get_retry_after(response)
            if after:
                return after
        return self.get_backoff_time()

    def sleep(self, response: Any = None) -> None:
        wait = self.planned_wait(response)
        if self.waited + wait > self.max_wait:
            raise WaitBudgetSpent(self, wait, self.max_wait, self.waited)
        self.waited += wait
        super().sleep(response)


def retry_strategy(max_wait: float | None = None) -> BoundedRetry:
    """isic-cli's ISIC_RETRY_STRATEGY (its statuses, attempts and backoff), bounded in total wait."""
    from isic_cli.session import ISIC_RETRY_STRATEGY as isic

    budget = max_wait if max_wait is not None else max_wait_from_env()
    return BoundedRetry(total=isic.total, status_forcelist=isic.status_forcelist, backoff_factor=isic.backoff_factor,
                        redirect=isic.redirect, raise_on_status=isic.raise_on_status, max_wait=budget)


def max_wait_from_env() -> float:
    """$DERMPIPE_ISIC_MAX_WAIT_S (seconds >= 0), else 600."""
    text = os.environ.get(MAX_WAIT_ENV, "").strip()
    try:
        value = float(text) if text else DEFAULT_MAX_WAIT_S
    except ValueError:
        value = -1.0
    if not value >= 0:  # also refuses nan
        raise IsicSourceError(f"{MAX_WAIT_ENV}={text!r}: expected the seconds one ISIC Archive request may spend "
                              f"waiting between retries, e.g. {DEFAULT_MAX_WAIT_S:.0f}")
    return value


def api_root() -> str:
    return (os.environ.get("ISIC_API_URL") or DEFAULT_API).rstrip("/") + "/"


def oauth_url(api: str) -> str:
    """The Archive's OAuth root beside its API (isic-cli: `<domain>/oauth` for prod, sandbox and dev alike)."""
    parts = urlsplit(api)
    return urlunsplit((parts.scheme, parts.netloc, "/oauth", "", ""))


@dataclass(frozen=True)
class Credentials:
    """The headers for API calls and, for the pre-flight and the logs, where they came from (never the token)."""

    source: str
    headers: dict[str, str] = field(default_factory=dict, repr=False)


def credentials(api: str | None = None) -> Credentials:
    """ISIC_TOKEN, else the stored `isic user login` (refreshed when expired), else none."""
    token = os.environ.get("ISIC_TOKEN", "").strip()
    if token:
        return Credentials("ISIC_TOKEN (environment)", {"Authorization": f"Bearer {token}"})
    import requests
    from authlib.integrations.base_client.errors import OAuthError
    from isic_cli.oauth import get_oauth_client

    client = get_oauth_client(oauth_url(api or api_root()))
    path = token_path(client)
    try:
        headers = client.maybe_restore_login()
    except (OAuthError, requests.RequestException, ValueError, KeyError) as err:
        raise IsicSourceError(
            f"the ISIC login that `isic user login` stored in {path} could not be used or refreshed "
            f"({type(err).__name__}: {getattr(err, 'error', None) or err}); run `isic user login` again (or "
            "set ISIC_TOKEN), or remove the file to use public images only") from None
    if headers:
        return Credentials(f"the `isic user login` token ({path}){_exposure(path)}", dict(headers))
    return Credentials(f"none: public images only (no ISIC_TOKEN, no `isic user login` token at {path})")


def _exposure(path: str) -> str:
    """A note when the token file is readable by other users (girder-cli-oauth-client writes it with the umask)."""
    try:
        mode = os.stat(path).st_mode & 0o777
    except OSError:
        return ""
    return f"; readable by other users (mode {mode:o}): run `chmod 600 {path}`" if mode & 0o077 else ""


def token_path(client: Any) -> str:
    """Where girder-cli-oauth-client keeps this Archive's token (its own property: the file isic-cli writes)."""
    return str(client._token_path)  # the one place the library names the file


def api_session(creds: Credentials, *, max_wait: float | None = None) -> Any:
    """isic-cli's session on the API root with the credentials' headers and the bounded retry."""
    from isic_cli.session import IsicCliSession

    session = IsicCliSession(api_root(), retry_strategy=retry_strategy(max_wait))
    session.headers.update(creds.headers)
    return session


def file_session(*, max_wait: float | None = None) -> Any:
    """isic-cli's session for signed image URLs: no base URL and no token (the signature is the authorisation)."""
    from isic_cli.session import IsicCliSession

    return IsicCliSession(retry_strategy=retry_strategy(max_wait))


def shown_url(url: str) -> str:
    """A URL fit for an error or a log: a signed file URL loses its query (the signature is a credential)."""
    parts = urlsplit(url)
    query = "" if "/images/search/" not in parts.path else parts.query
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


def describe(err: Exception) -> str:
    """What went wrong with one request, for a person: the request, the answer, the retries."""
    import requests

    url = shown_url(getattr(getattr(err, "request", None), "url", "") or "")
    cause = err.args[0] if err.args else None
    if isinstance(cause, WaitBudgetSpent):
        return f"GET {url} {cause.message}"
    if isinstance(err, requests.HTTPError) and err.response is not None:
        return f"GET {shown_url(err.response.url)} answered {err.response.status_code} {err.response.reason}"
    if isinstance(err, KeyError):
        return f"the answer has no {err} field: is ISIC_API_URL ({api_root()}) the ISIC Archive API v2?"
    if isinstance(err, ValueError):
        return f"GET {url} did not answer JSON ({err}): is ISIC_API_URL ({api_root()}) the ISIC Archive API v2?"
    if isinstance(cause, MaxRetryError):  # its text holds the path and query (a signature); its reason does not
        cause = cause.reason
    return f"GET {url} failed ({type(cause or err).__name__}: {cause or err})"


def search_arguments(spec: str) -> tuple[str, str]:
    """(search, collections) as isic-cli's calls take them: `249` / `249,251` -> collections, else a search query."""
    spec = spec.strip()
    if not spec:
        raise IsicSourceError("isic: needs a collection id or a search query, e.g. isic:249 or "
                              "isic:diagnosis_3:\"Melanoma Invasive\"")
    parts = [part.strip() for part in spec.split(",")]
    if all(part.isdigit() for part in parts):
        return "", ",".join(parts)
    return spec, ""


def _call(spec: str, what: str, func: Any, *args: Any) -> Any:
    import requests

    try:
        return func(*args)
    except (requests.RequestException, ValueError, KeyError) as err:
        raise IsicSourceError(f"isic:{spec}: {what}: {describe(err)}; check the collection id or query, the "
                              "credentials and the network, then run the ingest again") from None


def count_and_size(spec: str, session: Any) -> tuple[int, int]:
    """How many images the search finds and their total bytes, as isic-cli asks before `isic image download`."""
    from isic_cli.io.http import get_num_images, get_size_images

    search, collections = search_arguments(spec)
    count = _call(spec, "counting the images", get_num_images, session, search, collections)
    size = _call(spec, "sizing the images", get_size_images, session, search, collections) if count else 0
    return int(count), int(size)


def check_collections(spec: str, session: Any, creds: Credentials) -> None:
    """Each collection id of the source exists and these credentials may see it (isic-cli checks the same)."""
    import requests
    from isic_cli.io.http import get_collection

    for collection in filter(None, search_arguments(spec)[1].split(",")):
        try:
            get_collection(session, collection)
        except requests.HTTPError as err:
            if err.response is None or err.response.status_code != 404:
                raise IsicSourceError(f"isic:{spec}: checking collection {collection}: {describe(err)}") from None
            raise IsicSourceError(
                f"isic:{spec}: collection {collection} does not exist or these credentials may not see it "
                f"(credentials: {creds.source}); check the id on https://www.isic-archive.com/collections, or log "
                "in with `isic user login` (or set ISIC_TOKEN) for a private one") from None
        except requests.RequestException as err:
            raise IsicSourceError(f"isic:{spec}: checking collection {collection}: {describe(err)}") from None


def list_images(spec: str, session: Any) -> Iterator[dict[str, Any]]:
    """Every image record of the search through isic-cli's cursor listing; a failed page names its URL."""
    from isic_cli.io.http import get_images

    pages = get_images(session, *search_arguments(spec))
    while True:
        record = _call(spec, "listing the images", next, pages, None)
        if record is None:
            return
        yield record


def download_file(session: Any, url: str, handle: BinaryIO, offset: int) -> None:
    """The file at a signed URL from `offset` to its end into handle; a dropped stream resumes where it stopped."""
    import requests

    for attempt in range(STREAM_RESUMES + 1):
        start = handle.tell() if attempt else offset
        headers = {"Range": f"bytes={start}-"} if start else {}
        try:
            with session.get(url, headers=headers, stream=True) as response:
                response.raise_for_status()
                if start and response.status_code != 206:  # the server ignored the range: start over
                    handle.seek(0)
                    handle.truncate()
                for block in response.iter_content(BLOCK):
                    handle.write(block)
            return
        except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError) as err:
            if attempt == STREAM_RESUMES or isinstance(err.args[0] if err.args else None, MaxRetryError):
                raise


def human_bytes(n: int) -> str:
    """Bytes as isic-cli shows them (humanize's naturalsize: 5.6 GB)."""
    from humanize import naturalsize

    return naturalsize(n)
