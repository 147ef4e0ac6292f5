"""Who may write labels (and, with --auth-predict, ask for predictions): bearer tokens, per-token rate limits, and
the rule that an unauthenticated server takes labels only on loopback.

Tokens come from --auth-token-file (one `name:token` a line; blank lines and lines starting with # are skipped; re-read
when it changes, so tokens are issued and revoked without a restart) or, without it, from $DERMPIPE_SERVE_TOKENS
(the same entries separated by newlines or commas, read at start-up). A request presents one as
`Authorization: Bearer <token>` (HTTP) or as the `authorization` metadata of a gRPC call. The name is what the label
store and the log record; the token itself is never logged or stored. A presented token is compared with every
configured token with hmac.compare_digest, without stopping at a match, so the time taken says nothing about which
characters or which token matched.

The HTTP routes take their Caller through dependencies.py (feedback_caller, predict_caller), gRPC through
grpc_server's interceptor. Answers, in each protocol's error shape: no token 401 (with `WWW-Authenticate: Bearer`),
a wrong one 403, a right one over its rate 429 (with `Retry-After`); gRPC answers UNAUTHENTICATED, PERMISSION_DENIED,
RESOURCE_EXHAUSTED.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from dermpipe.serving.settings import ServingError, Settings

log = logging.getLogger("dermpipe.serve")
TOKENS_ENV = "DERMPIPE_SERVE_TOKENS"
MIN_TOKEN_CHARS = 16  # secrets.token_urlsafe(32) gives 43
TOKEN_SYNTAX = re.compile(r"[A-Za-z0-9\-._~+/]+=*")  # RFC 6750's b64token: what a Bearer header can carry
NAME_SYNTAX = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
NEW_TOKEN = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="dermpipe"'}


class SecuritySettingsError(ValueError):
    """Tokens or TLS files the server cannot start with; the message names the file (or variable) and the entry."""


@dataclass(frozen=True)
class Caller:
    """Who made a request: the token's name ("" without one), how it was authenticated, and from where."""

    name: str
    auth: str  # "bearer" | "none" (a server without tokens, on loopback)
    address: str  # the client's IP (uvicorn applies X-Forwarded-For from --forwarded-allow-ips proxies)

    def audit(self) -> dict[str, str]:
        """The audit fields a stored label carries (dermpipe.data.feedback.AUDIT_COLUMNS)."""
        return {"submitted_by": self.name, "auth": self.auth, "client": self.address}


def parse_tokens(text: str, where: str, separators: str = "\n") -> dict[str, str]:
    """name -> token of `text`'s entries; every malformed entry is an error naming `where` and the entry number."""
    tokens: dict[str, str] = {}
    entries = re.split(f"[{re.escape(separators)}]", text)
    for number, raw in enumerate(entries, start=1):
        entry = raw.strip()
        if not entry or entry.startswith("#"):
            continue
        name, colon, token = (part.strip() for part in entry.partition(":"))
        problem = _entry_problem(name, colon, token, tokens)
        if problem:
            raise SecuritySettingsError(f"{where}: entry {number}: {problem}")
        tokens[name] = token
    if not tokens:
        raise SecuritySettingsError(f"{where}: no name:token entry; write one a line, e.g. clinic-a:<token from "
                                    f"{NEW_TOKEN}>")
    return tokens


def _entry_problem(name: str, colon: str, token: str, seen: Mapping[str, str]) -> str:
    """Why one entry is unusable ("" when it is fine); never quotes the token."""
    if not colon:
        return "expected name:token (no ':' found)"
    if not NAME_SYNTAX.fullmatch(name):
        return f"name {name!r}: letters, digits and . _ @ - (up to 64, starting with a letter or digit)"
    if name in seen:
        return f"name {name!r} appears twice: each token needs its own name (the audit trail records it)"
    if not TOKEN_SYNTAX.fullmatch(token):
        return f"the token of {name!r} is not a bearer token (letters, digits, - . _ ~ + / and trailing =)"
    if len(token) < MIN_TOKEN_CHARS:
        return f"the token of {name!r} has {len(token)} characters; use {MIN_TOKEN_CHARS} or more: {NEW_TOKEN}"
    if any(hmac.compare_digest(token, other) for other in seen.values()):
        return f"the token of {name!r} is also another name's: give each name its own token"
    return ""


def load_tokens(token_file: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The configured tokens: --auth-token-file, else $DERMPIPE_SERVE_TOKENS, else none (an empty dict)."""
    environ = os.environ if environ is None else environ
    if token_file:
        if environ.get(TOKENS_ENV, "").strip():
            raise SecuritySettingsError(f"both --auth-token-file {token_file} and ${TOKENS_ENV} are set: keep one, "
                                        "so that the tokens in force are the ones you think")
        path = Path(token_file).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            raise SecuritySettingsError(f"--auth-token-file {path}: cannot be read ({err.strerror or err})") from err
        return parse_tokens(text, str(path))
    if environ.get(TOKENS_ENV, "").strip():
        return parse_tokens(environ[TOKENS_ENV], f"${TOKENS_ENV}", separators="\n,")
    return {}


class RateLimiter:
    """A token bucket per name: `per_minute` requests a minute, bursts up to as many; 0 turns it off."""

    def __init__(self, per_minute: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_second = per_minute / 60
        self.capacity = max(per_minute, 1.0)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # name -> (tokens left, when)
        self._lock = threading.Lock()  # HTTP's event loop and gRPC's share one limiter

    def take(self, name: str) -> float:
        """0 when the request may go ahead (and it is counted), else the seconds until it may."""
        if self.per_second <= 0:
            return 0.0
        with self._lock:
            now = self.clock()
            left, then = self._buckets.get(name, (self.capacity, now))
            left = min(self.capacity, left + (now - then) * self.per_second)
            if left >= 1:
                self._buckets[name] = (left - 1, now)
                return 0.0
            self._buckets[name] = (left, now)
            return (1 - left) / self.per_second


def _file_stamp(path: str) -> tuple[int, int, int] | None:
    """What changes when a file is rewritten or a Kubernetes Secret volume swaps it: mtime, size, inode."""
    try:
        found = os.stat(Path(path).expanduser())
    except OSError:
        return None
    return found.st_mtime_ns, found.st_size, found.st_ino


class Authenticator:
    """The configured tokens and their rate limits; check() is every protocol's one door. With `token_file`, the file
    is re-read when it changes, so a token is issued or revoked without a restart."""

    def __init__(self, tokens: Mapping[str, str], per_minute: float, clock: Callable[[], float] = time.monotonic,
                 token_file: str = "") -> None:
        self._use(tokens)
        self.limiter = RateLimiter(per_minute, clock)
        self.token_file = token_file
        self._stamp = _file_stamp(token_file) if token_file else None

    def _use(self, tokens: Mapping[str, str]) -> None:
        self._tokens = [(name, token.encode()) for name, token in tokens.items()]
        self.names = [name for name, _ in self._tokens]

    def reload_if_changed(self) -> None:
        """Re-read the token file when its stamp changed; a file that no longer parses leaves the tokens in force
        and says so (an ERROR line naming the entry), since refusing every caller would stop the clinic's labels."""
        stamp = _file_stamp(self.token_file) if self.token_file else None
        if stamp is None or stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            tokens = parse_tokens(Path(self.token_file).expanduser().read_text(encoding="utf-8"), self.token_file)
        except (OSError, SecuritySettingsError) as err:
            log.error("auth: %s changed but cannot be used (%s); the %d tokens read before stay in force: fix the "
                      "file", self.token_file, err, len(self.names))
            return
        before = dict(self._tokens)
        changes = {"added": sorted(set(tokens) - set(before)), "revoked": sorted(set(before) - set(tokens)),
                   "replaced": sorted(n for n in set(tokens) & set(before) if tokens[n].encode() != before[n])}
        self._use(tokens)
        log.warning("auth: %s re-read: %d tokens; %s", self.token_file, len(self.names),
                    "; ".join(f"{what} {', '.join(names)}" for what, names in changes.items() if names) or "unchanged")

    @property
    def enabled(self) -> bool:
        return bool(self._tokens)

    def identify(self, presented: str) -> str | None:
        """The name of the token presented, or None; every token is compared, in constant time each."""
        candidate, found = presented.encode("utf-8", "replace"), None
        for name, token in self._tokens:
            if hmac.compare_digest(candidate, token):
                found = name
        return found

    def check(self, authorization: str | None, address: str, what: str) -> Caller:
        """The caller of a request that must present a token for `what`, or the ServingError to answer."""
        self.reload_if_changed()
        scheme, _, credentials = (authorization or "").strip().partition(" ")
        if not authorization:
            raise ServingError(401, f"{what} needs a bearer token: send 'Authorization: Bearer <token>' (the "
                                    "server's operator issues tokens with --auth-token-file)", CHALLENGE)
        if scheme.lower() != "bearer" or not credentials.strip():
            raise ServingError(401, f"{what}: the Authorization header is not 'Bearer <token>' (scheme "
                                    f"{scheme[:20]!r})", CHALLENGE)
        name = self.identify(credentials.strip())
        if name is None:
            log.warning("auth: refused %s from %s: the token matches none of the configured tokens", what, address)
            raise ServingError(403, f"{what}: this token is not one of the server's tokens; ask its operator for "
                                    "one, or check the one you sent for a copy-paste error")
        wait = self.limiter.take(name)
        if wait:
            raise ServingError(429, f"{what}: token {name!r} is over its rate of {self.limiter.capacity:g} "
                                    f"requests a minute (--auth-rate-per-minute); retry in {math.ceil(wait)} s",
                               {"Retry-After": str(math.ceil(wait))})
        return Caller(name, "bearer", address)


def is_loopback(host: str) -> bool:
    """Whether `host` (an address or "localhost") is reachable only from this machine; a name is not."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def feedback_refusal(settings: Settings, auth: Authenticator) -> str:
    """Why feedback is refused on this server ("" when it is not): no tokens on an address beyond loopback."""
    if auth.enabled or is_loopback(settings.host):
        return ""
    return (f"feedback is refused: the server listens on {settings.host}, beyond this machine, and has no tokens, "
            "so anyone who reaches the port could write training labels; start it with --auth-token-file FILE "
            f"(or ${TOKENS_ENV}) to take labels from token holders, or on --host 127.0.0.1")


def startup_lines(settings: Settings, auth: Authenticator) -> list[tuple[int, str]]:
    """(log level, line) saying at start-up what needs a token, from where the tokens came, and TLS."""
    source = settings.auth_token_file or f"${TOKENS_ENV}"
    rate = f"{settings.auth_rate_per_minute:g} requests a minute each" if settings.auth_rate_per_minute else "no limit"
    lines = [(logging.INFO, f"auth: {len(auth.names)} tokens from {source} ({', '.join(auth.names)}; {rate}); "
                            f"feedback needs one, predict {'too' if settings.auth_predict else 'is open'}")
             ] if auth.enabled else []
    refusal = feedback_refusal(settings, auth)
    if refusal:
        lines.append((logging.WARNING, refusal))
    elif not auth.enabled:
        lines.append((logging.INFO, f"auth: no tokens; feedback and predict are open on loopback ({settings.host})"))
    tls = "TLS on (--tls-cert)" if settings.tls_cert else "no TLS: plain HTTP (terminate TLS at the ingress)"
    lines.append((logging.INFO, f"transport: {tls}"))
    return lines


def check_settings(settings: Settings, auth: Authenticator) -> None:
    """The start-up refusals: --auth-predict without tokens, half a TLS pair, unreadable TLS files."""
    if settings.auth_predict and not auth.enabled:
        raise SecuritySettingsError(f"--auth-predict needs tokens: give --auth-token-file FILE or set ${TOKENS_ENV}")
    if bool(settings.tls_cert) != bool(settings.tls_key):
        raise SecuritySettingsError("--tls-cert and --tls-key go together: give both PEM files, or neither")
    for flag, path in (("--tls-cert", settings.tls_cert), ("--tls-key", settings.tls_key)):
        if path and not Path(path).expanduser().is_file():
            raise SecuritySettingsError(f"{flag} {path}: no such file")
    if settings.tls_cert:
        _check_tls_pair(str(Path(settings.tls_cert).expanduser()), str(Path(settings.tls_key).expanduser()))


def _check_tls_pair(cert: str, key: str) -> None:
    """Load the pair as uvicorn will, so that a bad PEM, a key of another certificate or an encrypted key stops the
    start with its reason (an encrypted key would otherwise make OpenSSL prompt for a passphrase)."""
    import ssl

    def no_passphrase() -> bytes:
        raise SecuritySettingsError(f"--tls-key {key} is encrypted; serve needs an unencrypted PEM key (protect the "
                                    "file instead, e.g. a mounted Secret readable by the server's user only)")

    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key, password=no_passphrase)
    except ssl.SSLError as err:
        raise SecuritySettingsError(f"--tls-cert {cert} / --tls-key {key}: not a PEM certificate chain and its "
                                    f"private key ({err.reason or err})") from err
