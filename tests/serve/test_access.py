"""API keys, per-key rate limits and body limits on a served app ('guarded', beside the test 'blender'
app): keys from the config and from an environment variable of the ingress replica, 401 on every
route without a valid key, the official openai client with ``api_key=``, 429 with Retry-After, 413,
and no key in any Ray log."""

from __future__ import annotations

import secrets
from pathlib import Path

import httpx
import openai
import pytest

# Fresh keys per run, so that finding one in the logs can only mean this run leaked it.
A, B, C, D = (f"sk-cfg-{secrets.token_hex(12)}" for _ in range(4))  # config: openai client, rpm, tpm, 413/health
E1, E2, E3 = (f"sk-env-{secrets.token_hex(12)}" for _ in range(3))   # $BLENDER_SERVE_API_KEYS of the replica
WRONG = f"sk-bad-{secrets.token_hex(12)}"
ALL_KEYS = (A, B, C, D, E1, E2, E3, WRONG)

MSG = [{"role": "user", "content": "hi"}]
ROUTES = [("GET", "/v1/models", None), ("POST", "/v1/chat/completions", {"model": "alpha", "messages": MSG}),
          ("POST", "/v1/completions", {"model": "alpha", "prompt": "hi"}),
          ("POST", "/v1/rank", {"source": "q", "candidates": ["a", "b"]}),
          ("POST", "/v1/compare", {"source": "q", "candidate_a": "a", "candidate_b": "b"}),
          ("POST", "/v1/fuse", {"instruction": "q", "candidates": ["a"]}),
          ("GET", "/docs", None), ("GET", "/openapi.json", None)]


def _args(ranker_dir, open_health: bool = True) -> dict:
    from blender_serve.testing.apps import DEFAULT_GENERATORS, scripted_app_args

    args = scripted_app_args(ranker_dir, None, generators=DEFAULT_GENERATORS[:2], fusion="never")
    del args["ensemble"]["fuser"]  # /v1/fuse answers 404 here: enough to tell a key that passed
    args["access"] = {"api_keys": [A, B, C, D], "requests_per_minute": 3, "tokens_per_minute": 10, "open_health": open_health}
    # runtime_env is the one way to reach the replica's environment from here (the cluster is up); Ray
    # logs its env_vars (see test_no_key_reaches_a_log), so production sets the nodes' environment.
    args["deployments"]["ingress"]["ray_actor_options"]["runtime_env"] = {"env_vars": {"BLENDER_SERVE_API_KEYS": f"{E1}, {E2},{E3}"}}
    return args


@pytest.fixture(scope="module")
def guarded(deploy, pairrm_original):
    return deploy(_args(pairrm_original), "guarded")


def _call(base: str, method: str, path: str, body=None, key=None, header="authorization") -> httpx.Response:
    headers = {} if key is None else {header: f"Bearer {key}" if header == "authorization" else key}
    return httpx.request(method, f"{base}{path}", json=body, headers=headers, timeout=60)


def test_every_route_refuses_a_missing_or_wrong_key(guarded):
    for method, path, body in ROUTES + [("GET", "/nope", None)]:
        for key in (None, WRONG, A[:-1], A + "x"):
            r = _call(guarded, method, path, body, key)
            assert r.status_code == 401, (path, r.text)
            err = r.json()["error"]
            assert err["type"] == "invalid_request_error" and err["code"] == "invalid_api_key"
            assert r.headers["www-authenticate"] == "Bearer"
            assert not any(k in r.text for k in ALL_KEYS) and "sk-" not in r.text


def test_every_route_answers_the_right_keys_from_the_config_and_the_environment(guarded):
    expected = {"/v1/fuse": 404}  # no fuser in this app: past the door all the same
    keys = [E1, E2, E3] * 3  # three requests a minute each: spread over the environment's keys
    for (method, path, body), key, header in zip(ROUTES, keys, ["authorization", "api-key", "x-api-key"] * 3):
        r = _call(guarded, method, path, body, key, header)
        assert r.status_code == expected.get(path, 200), (path, r.text)


def test_the_openai_client_sends_its_api_key(guarded):
    client = openai.OpenAI(base_url=f"{guarded}/v1", api_key=A, max_retries=0, timeout=60)
    assert {m.id for m in client.models.list().data} == {"blender", "alpha", "beta"}
    resp = client.chat.completions.create(model="alpha", messages=[{"role": "user", "content": "ping"}])
    assert resp.choices[0].message.content == "alpha says: ping"
    pieces = [c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="alpha", stream=True, messages=[{"role": "user", "content": "ping"}]) if c.choices]
    assert "".join(pieces) == "alpha says: ping"
    with pytest.raises(openai.AuthenticationError) as refused:
        openai.OpenAI(base_url=f"{guarded}/v1", api_key=WRONG, max_retries=0).models.list()
    assert refused.value.status_code == 401 and refused.value.code == "invalid_api_key"
    with pytest.raises(openai.RateLimitError):  # A spent its three requests of this minute
        client.models.list()


def test_the_playground_page_loads_without_a_key_and_its_api_still_needs_one(guarded):
    page = httpx.get(f"{guarded}/ui", follow_redirects=True, timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html") and 'id="api_key"' in page.text
    assert httpx.get(f"{guarded}/ui/app.js", timeout=10).status_code == 200
    assert _call(guarded, "POST", "/ui/", {}).status_code == 401  # only reads of the page are open
    r = _call(guarded, "GET", "/v1/models")
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


def test_health_is_open_by_default(guarded):
    r = httpx.get(f"{guarded}/health", timeout=10)
    assert r.status_code == 200 and r.json()["status"] == "ok"


def test_requests_per_minute_then_429_with_retry_after(guarded):
    for _ in range(3):
        assert _call(guarded, "GET", "/v1/models", key=B).status_code == 200
    r = _call(guarded, "GET", "/v1/models", key=B)
    assert r.status_code == 429 and 1 <= int(r.headers["retry-after"]) <= 20  # 3 a minute: one every 20 s
    err = r.json()["error"]
    assert err["type"] == "rate_limit_error" and err["code"] == "rate_limit_exceeded" and "requests per minute" in err["message"]
    assert _call(guarded, "GET", "/v1/models", key=D).status_code == 200  # D has a budget of its own


def test_tokens_per_minute_are_charged_with_the_answers_usage(guarded):
    r = _call(guarded, "POST", "/v1/chat/completions", {"model": "blender", "messages": [
        {"role": "user", "content": "tell me about the sea and the sky"}]}, key=C)
    assert r.status_code == 200 and r.json()["usage"]["total_tokens"] > 10  # over the budget of 10: charged after
    r = _call(guarded, "GET", "/v1/models", key=C)
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1 and "tokens per minute" in r.json()["error"]["message"]


def test_a_2mb_body_is_413_and_the_key_comes_first(guarded):
    body = {"model": "alpha", "messages": [{"role": "user", "content": "x" * 2_000_000}]}
    assert _call(guarded, "POST", "/v1/chat/completions", body).status_code == 401
    r = _call(guarded, "POST", "/v1/chat/completions", body, key=D)
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"


def test_health_can_be_closed(guarded, deploy, pairrm_original):
    deploy(_args(pairrm_original, open_health=False), "guarded")
    assert httpx.get(f"{guarded}/health", timeout=10).status_code == 401
    assert _call(guarded, "GET", "/health", key=D).status_code == 200


def test_no_key_reaches_a_log(guarded):
    import ray

    session = Path(ray._private.worker._global_node.get_session_dir_path())
    files = [p for p in (session / "logs").rglob("*") if p.is_file()]
    assert files, f"no log files under {session}"
    names = {"A": A, "B": B, "C": C, "D": D, "WRONG": WRONG, "E1": E1, "E2": E2, "E3": E3}
    found = {str(p.relative_to(session)): sorted(n for n, k in names.items() if k.encode() in p.read_bytes()) for p in files}
    found = {p: n for p, n in found.items() if n}
    # Ray's runtime-env agent logs every runtime_env it sets up, env_vars included, at INFO: a key
    # passed through runtime_env is Ray's to log. Hence the README: set the variable in the nodes'
    # own environment (every worker inherits it), not in runtime_env. Nothing of ours logs a key.
    ray_own = {p: n for p, n in found.items() if p.endswith("runtime_env_agent.log")}
    assert {p: n for p, n in found.items() if p not in ray_own} == {}
    assert all(set(n) <= {"E1", "E2", "E3"} for n in ray_own.values())
