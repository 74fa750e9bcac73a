"""Access control without Ray: keys, token buckets on a fake clock, body limits, and the router's
middleware driven through FastAPI's TestClient over a real BlenderServing (scripted base models)."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from blender_serve.errors import InvalidInputError, validated
from blender_serve.pipeline import Blender
from blender_serve.types import RankResult
from deployments import access as access_mod
from deployments.access import AccessGuard, KeyRing, Refused, TokenBucket, json_depth, presented_key
from deployments.config import Access, AppArgs, Limits
from deployments.router import app, current_serving
from deployments.serving import BlenderServing

KEY, OTHER = "sk-unit-4f1d9c", "sk-unit-77ab02"


class FakeClock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


# -- keys ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("headers, key", [
    ({"authorization": f"Bearer {KEY}"}, KEY),
    ({"authorization": f"bearer   {KEY}  "}, KEY),
    ({"api-key": KEY}, KEY),
    ({"x-api-key": KEY}, KEY),
    ({"authorization": "Basic dXNlcjpwdw=="}, None),
    ({"authorization": "Bearer "}, None),
    ({}, None),
])
def test_the_key_a_request_presents(headers, key):
    assert presented_key(headers) == key


def test_keyring_matches_against_every_key(monkeypatch):
    ring = KeyRing([KEY, OTHER, KEY, ""])
    assert len(ring) == 2 and ring.identify(KEY) == 0 and ring.identify(OTHER) == 1
    assert ring.identify("sk-unit-4f1d9") is None and ring.identify(None) is None
    calls = []
    real = access_mod.hmac.compare_digest
    monkeypatch.setattr(access_mod.hmac, "compare_digest", lambda a, b: calls.append(1) or real(a, b))
    assert ring.identify(KEY) == 0 and len(calls) == 2  # no early exit on the first key's match


# -- budgets ------------------------------------------------------------------------------------

def test_token_bucket_refills_over_its_period_and_may_overdraw():
    clock = FakeClock()
    bucket = TokenBucket(3, 60.0, clock)
    assert bucket.level() == 3 and bucket.wait_s(1) == 0
    bucket.take(3)
    assert bucket.wait_s(1) == pytest.approx(20.0)
    clock.t += 10
    assert bucket.level() == pytest.approx(0.5)  # 3 per minute: 0.05 per second
    bucket.take(6.5)  # charged after the fact: a debt of 6
    assert bucket.wait_s(1) == pytest.approx(140.0)
    clock.t += 10_000
    assert bucket.level() == 3  # never above capacity


def test_requests_per_minute_per_key_with_retry_after():
    clock = FakeClock()
    guard = AccessGuard(Access(api_keys=[KEY, OTHER], requests_per_minute=3), clock=clock)
    bearer = {"authorization": f"Bearer {KEY}"}
    for _ in range(3):
        guard.admit("/v1/models", bearer)
    with pytest.raises(Refused) as refused:
        guard.admit("/v1/models", bearer)
    assert refused.value.status == 429 and refused.value.headers == {"Retry-After": "20"}
    assert refused.value.body.error.type == "rate_limit_error" and refused.value.body.error.code == "rate_limit_exceeded"
    assert "requests per minute" in refused.value.body.error.message
    guard.admit("/v1/models", {"x-api-key": OTHER})  # another key has its own budget
    clock.t += 20
    guard.admit("/v1/models", bearer)


def test_tokens_per_minute_are_charged_after_the_answer():
    clock = FakeClock()
    guard = AccessGuard(Access(api_keys=[KEY], tokens_per_minute=60), clock=clock)
    ticket = guard.admit("/v1/chat/completions", {"api-key": KEY})
    ticket.charge(100)  # over budget: the answer is already given, the debt is 40 tokens
    with pytest.raises(Refused) as refused:
        guard.admit("/v1/chat/completions", {"api-key": KEY})
    assert refused.value.status == 429 and refused.value.headers["Retry-After"] == "41"  # 41 tokens at 1/s
    assert "tokens per minute" in refused.value.body.error.message
    clock.t += 41
    guard.admit("/v1/chat/completions", {"api-key": KEY})


def test_missing_and_wrong_keys_are_401_without_echoing_the_key():
    guard = AccessGuard(Access(api_keys=[KEY]))
    for headers, says in [({}, "missing API key"), ({"authorization": "Bearer sk-wrong-123"}, "invalid API key")]:
        with pytest.raises(Refused) as refused:
            guard.admit("/v1/models", headers)
        body = refused.value.body.model_dump_json()
        assert refused.value.status == 401 and says in body and "sk-" not in body
        assert refused.value.body.error.code == "invalid_api_key" and refused.value.body.error.type == "invalid_request_error"
    assert guard.admit("/health", {}) is None  # open_health
    with pytest.raises(Refused):
        AccessGuard(Access(api_keys=[KEY], open_health=False)).admit("/health", {})
    assert AccessGuard(Access()).admit("/v1/models", {}) is None  # no keys: open


def test_keys_from_the_environment_variable():
    access = Access(api_keys=[KEY], api_keys_env="MY_KEYS")
    guard = AccessGuard.from_environ(access, Limits(), {"MY_KEYS": f" {OTHER}, sk-env-2 ,,"})
    assert len(guard.keys) == 3 and guard.keys.identify("sk-env-2") is not None
    assert len(AccessGuard.from_environ(Access(api_keys_env=None), Limits(), {"BLENDER_SERVE_API_KEYS": OTHER}).keys) == 0


def test_rate_limits_need_keys():
    with pytest.raises(ValidationError, match="rate limits count per API key"):
        Access(requests_per_minute=10, api_keys_env=None)
    with pytest.raises(ValueError, match="no key is configured"):  # the env var the config names is empty
        AccessGuard.from_environ(Access(tokens_per_minute=10), Limits(), {})


def test_a_bad_key_in_the_config_is_rejected_without_showing_it():
    with pytest.raises(InvalidInputError) as err:  # what `blender-serve validate` and the builder print
        validated(Access, {"api_keys": [KEY, "sk-has space"]}, "access")
    assert "api_keys[1]" in str(err.value) and "sk-" not in str(err.value)
    assert "sk-has" not in repr(Access(api_keys=["sk-hidden"]))  # SecretStr: not in reprs or logs


# -- JSON depth ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text, depth", [
    (b"", 0), (b"3", 0), (b"{}", 1), (b'{"a": [1, {"b": []}]}', 4),
    (b'{"a": "[[[[{{{{", "b": "\\"]]]"}', 1),  # brackets inside strings do not count
    (b"[" * 40 + b"]" * 40, 40),
    (b"[" * 100, 100),  # unbalanced, and too deep all the same
    (b'[{"a": [{"b": [[]]}]}]', 6),
])
def test_json_depth(text, depth):
    assert json_depth(text) == depth


def test_json_depth_of_a_megabyte_is_quick():
    import time

    body = json.dumps({"messages": [{"content": "x\\\"[" * 100_000}], "a": [[1]] * 50_000}).encode()
    t0 = time.perf_counter()
    assert json_depth(body) == 3 and json_depth(b"[" * 500_000 + b"]" * 500_000) == 500_000
    assert time.perf_counter() - t0 < 2.0  # about 0.05 s: no Python loop over the bytes


# -- the middleware, through the router ---------------------------------------------------------

class FakeRanker:
    async def arank(self, source, candidates, strategy="max_logits", top_k=None):
        n = len(candidates)
        return RankResult(order=list(range(n)), scores=[float(n - i) for i in range(n)], strategy=strategy)

    async def acompare(self, source, candidate_a, candidate_b, mode="both"):
        return 1.0


def _serving(**access) -> BlenderServing:
    args = AppArgs.model_validate({
        "ensemble": {"name": "blender", "ranker": {"path": "/unused"}, "fusion": "never", "top_k": 2, "generators": [
            {"name": "alpha", "backend": "scripted", "options": {"template": "alpha says: {prompt}"}},
            {"name": "beta", "backend": "scripted", "options": {"template": "beta: {prompt}"}}]},
        "limits": {"max_body_bytes": 10_000, "max_json_depth": 8},
        "access": access})
    return BlenderServing(args, Blender(args.ensemble, ranker=FakeRanker()))


@pytest.fixture
def serve_with():
    """A TestClient over the router app with a given BlenderServing as the replica's."""
    def make(serving: BlenderServing) -> TestClient:
        app.dependency_overrides[current_serving] = lambda: serving
        return TestClient(app, raise_server_exceptions=False)

    yield make
    app.dependency_overrides.pop(current_serving, None)


CHAT = {"model": "blender", "messages": [{"role": "user", "content": "hi"}]}
ROUTES = [("GET", "/v1/models", None), ("POST", "/v1/chat/completions", CHAT),
          ("POST", "/v1/completions", {"model": "alpha", "prompt": "hi"}),
          ("POST", "/v1/rank", {"source": "q", "candidates": ["a", "b"]}),
          ("POST", "/v1/compare", {"source": "q", "candidate_a": "a", "candidate_b": "b"}),
          ("POST", "/v1/fuse", {"candidates": ["a"], "instruction": "q"}),
          ("GET", "/health", None), ("GET", "/docs", None), ("GET", "/openapi.json", None), ("GET", "/nope", None)]


def test_every_route_needs_the_key(serve_with):
    client = serve_with(_serving(api_keys=[KEY], open_health=False))
    for method, path, body in ROUTES:
        for headers in ({}, {"authorization": "Bearer sk-wrong"}, {"authorization": f"Bearer {KEY}x"}):
            r = client.request(method, path, json=body, headers=headers)
            assert r.status_code == 401, (path, r.text)
            assert r.json()["error"]["code"] == "invalid_api_key" and r.headers["www-authenticate"] == "Bearer"
            assert "sk-" not in r.text
    ok = {path: client.request(method, path, json=body, headers={"authorization": f"Bearer {KEY}"}).status_code
          for method, path, body in ROUTES}
    assert ok == {"/v1/models": 200, "/v1/chat/completions": 200, "/v1/completions": 200, "/v1/rank": 200,
                  "/v1/compare": 200, "/v1/fuse": 404, "/health": 200, "/docs": 200, "/openapi.json": 200, "/nope": 404}


def test_open_health_and_an_open_app(serve_with):
    client = serve_with(_serving(api_keys=[KEY]))
    assert client.get("/health").status_code == 200 and client.get("/v1/models").status_code == 401
    client = serve_with(_serving())
    assert client.get("/v1/models").status_code == 200 and client.post("/v1/chat/completions", json=CHAT).status_code == 200


def test_body_limits(serve_with):
    client = serve_with(_serving(api_keys=[KEY]))
    auth = {"x-api-key": KEY, "content-type": "application/json"}
    big = json.dumps({**CHAT, "user": "u" * 20_000}).encode()
    r = client.post("/v1/chat/completions", content=big, headers=auth)
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
    r = client.post("/v1/chat/completions", content=iter([big[:6000], big[6000:]]), headers=auth)  # chunked: no Content-Length
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
    assert client.post("/v1/chat/completions", content=big).status_code == 401  # the key is checked first
    deep = json.dumps(CHAT).encode()[:-1] + b', "stop": ' + b"[" * 8 + b"]" * 8 + b"}"  # 9 levels
    r = client.post("/v1/chat/completions", content=deep, headers=auth)
    assert r.status_code == 400 and "deeper than 8" in r.json()["error"]["message"]
    r = client.post("/v1/chat/completions", content=b"[" * 5000 + b"]" * 5000, headers=auth)
    assert r.status_code == 400


def test_streams_pass_through_and_tokens_are_charged(serve_with):
    serving = _serving(api_keys=[KEY], tokens_per_minute=30)
    clock = FakeClock()
    serving.access = AccessGuard(serving.args.access, serving.args.limits, clock=clock)
    client = serve_with(serving)
    auth = {"authorization": f"Bearer {KEY}"}
    with client.stream("POST", "/v1/chat/completions", json={**CHAT, "model": "alpha", "stream": True}, headers=auth) as r:
        frames = [line for line in r.iter_lines() if line]
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream") and frames[-1] == "data: [DONE]"
    level = serving.access._tokens[0].level()
    assert level == 30 - 4  # "hi" -> "alpha says: hi": 1 + 3 tokens, charged at the end of the stream
    r = client.post("/v1/chat/completions", json=CHAT, headers=auth)
    usage = r.json()["usage"]["total_tokens"]
    assert r.status_code == 200 and serving.access._tokens[0].level() == level - usage
    serving.access.charge(0, 100)
    r = client.get("/v1/models", headers=auth)
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 1 and r.json()["error"]["type"] == "rate_limit_error"
    clock.t += 600
    assert client.get("/v1/models", headers=auth).status_code == 200


def test_the_playground_page_is_open_but_its_api_calls_need_the_key(serve_with):
    client = serve_with(_serving(api_keys=[KEY], open_health=False))
    assert client.get("/ui", follow_redirects=False).status_code in (307, 308)
    for path in ("/ui/", "/ui/app.js", "/ui/style.css"):
        r = client.get(path)
        assert r.status_code == 200, (path, r.text)
    assert client.head("/ui/").status_code == 200
    assert client.get("/ui/missing.js").status_code == 404  # past the door, and nothing there
    assert client.post("/ui/", json={}).status_code == 401  # only reads are open
    assert client.get("/v1/models").status_code == 401 and client.get("/uix").status_code == 401
    assert client.get("/v1/models", headers={"authorization": f"Bearer {KEY}"}).status_code == 200


@pytest.mark.parametrize("path, method, open_", [
    ("/ui", "GET", True), ("/ui/", "HEAD", True), ("/ui/app.js", "GET", True), ("/ui/", "POST", False),
    ("/ui/", None, False), ("/uix", "GET", False), ("/ui/../v1/models", "GET", False), ("/v1/ui/", "GET", False)])
def test_which_requests_read_the_page(path, method, open_):
    assert access_mod.is_page(path, method) is open_
    guard = AccessGuard(Access(api_keys=[KEY]))
    if open_:
        assert guard.admit(path, {}, method) is None
    else:
        with pytest.raises(Refused):
            guard.admit(path, {}, method)
