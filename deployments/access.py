"""Access control at the ingress: API keys, per-key rate limits and request-body limits.

Plain classes with no FastAPI; ``deployments.router`` installs ``AccessMiddleware`` on its app:
- ``KeyRing``: the accepted keys, matched in constant time against every key;
- ``TokenBucket``: a budget refilled continuously over a period (clock injectable for tests);
- ``AccessGuard``: one ingress replica's policy (``Access`` and ``Limits`` of the app's args):
  ``admit(path, headers, method)`` lets a request in or raises ``Refused`` (401 no or wrong key, 429
  over a rate limit, with ``Retry-After``); the playground's static files (GET/HEAD under /ui) are
  open, since they hold no data and the page sends its user's key on every API call;
- ``AccessMiddleware``: the ASGI hook that runs before any routing or body parsing: it asks the
  guard, caps the body (413, with or without Content-Length), rejects JSON nested deeper than the
  limit (400), then replays the body to the app. While the request runs, the serving code charges
  the answer's tokens to the caller's key with ``charge_tokens``.
Keys never leave this module: messages and logs name no key, only how many there are.
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import logging
import math
import os
import re
import threading
import time
from typing import Awaitable, Callable, Iterable, Mapping, Optional

import numpy as np

from deployments.config import Access, Limits
from deployments.errors import error_body, refusal_body
from deployments.protocol import ErrorResponse

__all__ = ["AccessGuard", "AccessMiddleware", "KeyRing", "Pass", "Refused", "TokenBucket", "charge_tokens",
           "is_page", "json_depth", "presented_key"]

logger = logging.getLogger("ray.serve")

Clock = Callable[[], float]


class Refused(Exception):
    """A request turned away before any work: its status, OpenAI-style body and extra headers."""

    def __init__(self, status: int, body: ErrorResponse, headers: Optional[dict[str, str]] = None):
        super().__init__(body.error.message)
        self.status, self.body, self.headers = status, body, dict(headers or {})


# -- keys ---------------------------------------------------------------------------------------

def presented_key(headers: Mapping[str, str]) -> Optional[str]:
    """The key a request carries: ``Authorization: Bearer <key>`` (what OpenAI clients send), else an
    ``api-key`` or ``x-api-key`` header; None when there is none."""
    scheme, _, value = (headers.get("authorization") or "").strip().partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    for name in ("api-key", "x-api-key"):
        if (headers.get(name) or "").strip():
            return headers[name].strip()
    return None


def _digest(key: str) -> bytes:
    try:
        raw = key.encode("latin-1")  # how ASGI servers decode header bytes: back to the bytes sent
    except UnicodeEncodeError:
        raw = key.encode("utf-8", "surrogatepass")
    return hashlib.sha256(raw).digest()


class KeyRing:
    """The accepted API keys. Only their SHA-256 digests are kept; a presented key is compared with
    every one of them in constant time (equal-length digests, no early exit), so the time taken
    says nothing about how much of a key was right, nor which key matched."""

    def __init__(self, keys: Iterable[str]):
        self._digests = [_digest(k) for k in dict.fromkeys(k for k in keys if k)]

    def __len__(self) -> int:
        return len(self._digests)

    def identify(self, presented: Optional[str]) -> Optional[int]:
        """The index of the key that matches ``presented``, or None."""
        if presented is None:
            return None
        digest, match = _digest(presented), None
        for i, known in enumerate(self._digests):
            if hmac.compare_digest(known, digest):
                match = i if match is None else match
        return match


# -- rate limits --------------------------------------------------------------------------------

class TokenBucket:
    """``capacity`` units that refill continuously at ``capacity`` per ``period_s``. ``take`` may
    overdraw (tokens are charged after the answer, when the count is known): the debt is paid back
    by the refill before the next request fits."""

    def __init__(self, capacity: float, period_s: float = 60.0, clock: Clock = time.monotonic):
        assert capacity > 0 and period_s > 0, "a bucket needs a positive capacity and period"
        self.capacity, self.rate, self._clock = float(capacity), capacity / period_s, clock
        self._level, self._at = float(capacity), clock()

    def level(self) -> float:
        now = self._clock()
        self._level = min(self.capacity, self._level + (now - self._at) * self.rate)
        self._at = now
        return self._level

    def wait_s(self, need: float = 1.0) -> float:
        """Seconds until ``need`` units are there (0 when they are now)."""
        return max(0.0, (min(need, self.capacity) - self.level()) / self.rate)

    def take(self, amount: float) -> None:
        self.level()
        self._level -= amount


class Pass:
    """An admitted request's key: what the serving code charges the answer's tokens to."""

    def __init__(self, guard: "AccessGuard", key: int):
        self._guard, self.key = guard, key

    def charge(self, tokens: int) -> None:
        self._guard.charge(self.key, tokens)


class AccessGuard:
    """The access policy of one ingress replica: its keys, its per-key budgets and body limits.

    Example::

        guard = AccessGuard(Access(api_keys=["sk-1"], requests_per_minute=60))
        ticket = guard.admit("/v1/models", {"authorization": "Bearer sk-1"})  # or raises Refused
        ticket.charge(120)  # tokens of the answer, counted against tokens_per_minute

    Budgets live in this replica's memory: with N ingress replicas a key gets up to N times the
    configured rate (divide a cluster-wide budget by the replica count).
    """

    def __init__(self, access: Optional[Access] = None, limits: Optional[Limits] = None, *,
                 extra_keys: Iterable[str] = (), clock: Clock = time.monotonic):
        self.access, self.limits = access or Access(), limits or Limits()
        self.keys = KeyRing([k.get_secret_value() for k in self.access.api_keys] + list(extra_keys))
        self._clock = clock
        self._requests: dict[int, TokenBucket] = {}
        self._tokens: dict[int, TokenBucket] = {}
        self._lock = threading.Lock()
        limited = self.access.requests_per_minute or self.access.tokens_per_minute
        if limited and not self.keys:
            raise ValueError(f"access: rate limits count per API key, but no key is configured (api_keys is empty "
                             f"and ${self.access.api_keys_env or '(api_keys_env unset)'} holds none)")

    @classmethod
    def from_environ(cls, access: Access, limits: Limits, environ: Optional[Mapping[str, str]] = None) -> "AccessGuard":
        """The guard of an ingress replica: the configured keys plus those in ``access.api_keys_env``."""
        environ = os.environ if environ is None else environ
        raw = environ.get(access.api_keys_env, "") if access.api_keys_env else ""
        extra = [k.strip() for k in raw.split(",") if k.strip()]
        guard = cls(access, limits, extra_keys=extra)
        if guard.keys:
            logger.info("access: %d API key(s) (%d from $%s); requests/min per key: %s, tokens/min per key: %s",
                        len(guard.keys), len(extra), access.api_keys_env, access.requests_per_minute or "unlimited",
                        access.tokens_per_minute or "unlimited")
        else:
            logger.info("access: no API key configured (api_keys is empty, $%s unset): the HTTP API is open",
                           access.api_keys_env)
        return guard

    def admit(self, path: str, headers: Mapping[str, str], method: Optional[str] = None) -> Optional[Pass]:
        """A Pass for a ``method`` request to ``path`` with these headers; None when no key is needed
        (no keys configured, an open /health, or the playground's static files). Raises Refused:
        401 without a valid key, 429 over a budget."""
        if not self.keys or (path == "/health" and self.access.open_health) or is_page(path, method):
            return None
        presented = presented_key(headers)
        key = self.keys.identify(presented)
        if key is None:
            message = ("missing API key: send it as 'Authorization: Bearer <key>'" if presented is None
                       else "invalid API key")
            raise Refused(401, refusal_body(401, message, "invalid_api_key"), {"WWW-Authenticate": "Bearer"})
        with self._lock:
            self._spend_request(key)
        return Pass(self, key)

    def charge(self, key: int, tokens: int) -> None:
        """Count an answer's tokens against the key's tokens_per_minute."""
        if self.access.tokens_per_minute and tokens > 0:
            with self._lock:
                self._bucket(self._tokens, key, self.access.tokens_per_minute).take(tokens)

    def _spend_request(self, key: int) -> None:
        waits = {}
        if self.access.requests_per_minute:
            waits["requests"] = self._bucket(self._requests, key, self.access.requests_per_minute).wait_s(1)
        if self.access.tokens_per_minute:
            waits["tokens"] = self._bucket(self._tokens, key, self.access.tokens_per_minute).wait_s(1)
        over = sorted(what for what, wait in waits.items() if wait > 0)
        if over:
            retry = max(1, math.ceil(max(waits.values())))
            message = (f"rate limit reached for this API key ({' and '.join(f'{w} per minute' for w in over)}); "
                       f"retry in {retry}s")
            raise Refused(429, refusal_body(429, message, "rate_limit_exceeded"), {"Retry-After": str(retry)})
        if self.access.requests_per_minute:
            self._requests[key].take(1)

    def _bucket(self, buckets: dict[int, TokenBucket], key: int, per_minute: int) -> TokenBucket:
        if key not in buckets:
            buckets[key] = TokenBucket(per_minute, 60.0, self._clock)
        return buckets[key]


def is_page(path: str, method: Optional[str]) -> bool:
    """Whether this is a read of the playground's static files (/ui, /ui/...): open to anyone, as
    they hold no data; every API call the page makes carries the key its user typed in."""
    return (method in ("GET", "HEAD") and (path == "/ui" or path.startswith("/ui/"))
            and ".." not in path.split("/"))


# -- charging the answer's tokens ---------------------------------------------------------------

_current_pass: contextvars.ContextVar[Optional[Pass]] = contextvars.ContextVar("blender_access_pass", default=None)


def charge_tokens(tokens: int) -> None:
    """Charge ``tokens`` to the key of the HTTP request being served; a no-op outside one (handle
    calls, unguarded apps)."""
    ticket = _current_pass.get()
    if ticket is not None:
        ticket.charge(tokens)


# -- request bodies -----------------------------------------------------------------------------

_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_STEP = np.zeros(256, np.int8)  # byte -> change of nesting depth
_STEP[list(b"[{")] = 1
_STEP[list(b"]}")] = -1


def json_depth(body: bytes) -> int:
    """How deeply arrays and objects nest in the JSON text ``body``, without parsing it: strings are
    dropped, then the depth is the highest running sum of +1 per ``[``/``{`` and -1 per ``]``/``}``
    (a few milliseconds for a megabyte). Unbalanced (invalid) text is the JSON parser's to reject."""
    steps = _STEP[np.frombuffer(_JSON_STRING.sub(b"", body), np.uint8)]
    return int(np.cumsum(steps, dtype=np.int32).max(initial=0))


def _too_large(limit: int) -> Refused:
    return Refused(413, refusal_body(413, f"the request body is over the limit of {limit} bytes", "request_too_large"))


async def _read_body(scope, receive, limit: int) -> Optional[bytes]:
    """The whole body, or None when the client left; Refused (413) past ``limit`` bytes."""
    declared = dict(scope.get("headers") or ()).get(b"content-length", b"")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive):
    """A receive that hands the app the body read already, then the client's own messages (disconnect)."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed():
        return pending.pop() if pending else await receive()

    return replayed


def _route_path(scope) -> str:
    path, root = scope.get("path", "/"), scope.get("root_path", "")
    return (path[len(root):] or "/") if root and path.startswith(root) else path


class AccessMiddleware:
    """ASGI middleware applying the replica's AccessGuard before anything else runs.

    ``guard`` is called per request (the guard belongs to the replica serving it). Refusals leave
    as OpenAI-style JSON bodies; an admitted request reaches the app with its body replayed, and
    its responses, streamed ones included, pass through untouched.
    """

    def __init__(self, app, guard: Callable[[], AccessGuard]):
        self.app, self.guard = app, guard

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        guard = self.guard()
        try:
            ticket = guard.admit(_route_path(scope), _Headers(scope), scope.get("method"))
            body = await _read_body(scope, receive, guard.limits.max_body_bytes)
            if body is None:
                return
            if json_depth(body) > guard.limits.max_json_depth:
                raise Refused(400, error_body(400, f"the JSON body nests deeper than {guard.limits.max_json_depth} levels"))
        except Refused as refused:
            await _send_refusal(refused, send)
            return
        token = _current_pass.set(ticket)
        try:
            await self.app(scope, _replay(body, receive), send)
        finally:
            _current_pass.reset(token)


class _Headers(Mapping[str, str]):
    """The request's headers by lower-case name (the last value wins), decoded as ASGI servers do."""

    def __init__(self, scope):
        self._h = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or ()}

    def __getitem__(self, name: str) -> str:
        return self._h[name]

    def __iter__(self):
        return iter(self._h)

    def __len__(self) -> int:
        return len(self._h)


async def _send_refusal(refused: Refused, send: Callable[[dict], Awaitable[None]]) -> None:
    payload = refused.body.model_dump_json().encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in refused.headers.items()]
    await send({"type": "http.response.start", "status": refused.status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
