"""Faults on a real local Ray: replicas killed under load, misbehaving models, dead engines, clients
that leave. Each scenario counts every request's outcome (``deployments.reliability``): none is
lost, none gets a 500, none waits past its deadlines, and the killed part comes back.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from blender_serve.testing.apps import FAULT_MODELS, fault_app_args, free_port
from deployments.reliability import drive, kill_replica, replicas, wait_for_replicas

APP = "faults"
# The longest a request may take here: a model deadline, then the ranker's and the fuser's timeouts.
WORST_CASE_S = 2.0 + 3.0 + 5.0 + 2.0


def chat_body(i: int = 0, models=FAULT_MODELS, **blender) -> dict:
    return {"model": "blender", "messages": [{"role": "user", "content": f"question {i}"}], "max_tokens": 8,
            "blender": {"models": list(models), **blender}}


@pytest.fixture(scope="module")
def invalid_utf8_server():
    """A local 'OpenAI-compatible' server whose answers are not valid UTF-8."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            self.rfile.read(int(self.headers.get("content-length", 0)))
            body = b'{"choices":[{"message":{"role":"assistant","content":"caf\xe9 \xff\xfe"},"finish_reason":"stop"}]}'
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


@pytest.fixture(scope="module")
def fault_app(deploy, pairrm_original, talkative_fuser_dir, invalid_utf8_server):
    remote = {"name": "mojibake", "backend": "openai", "model": "m", "options": {"base_url": invalid_utf8_server}}
    return deploy(fault_app_args(pairrm_original, talkative_fuser_dir, extra_generators=[remote]), APP)


def _healthy_again(url: str, deployment: str, before: set[str]) -> None:
    """The killed deployment has a new replica, and requests are answered in full again."""
    print(f"{deployment} back in {asyncio.run(wait_for_replicas(APP, deployment, other_than=before, timeout_s=90)):.1f}s")
    # If the ingress saw the deployment down (DeploymentWatch), it looks again every 0.5 s.
    for _ in range(20):
        if asyncio.run(drive(url, 1, 1, chat_body, timeout_s=WORST_CASE_S + 5)).full == 1:
            break
        time.sleep(0.25)
    after = asyncio.run(drive(url, 8, 4, chat_body, timeout_s=WORST_CASE_S + 5))
    assert after.full == 8, after.summary()


def _no_request_lost(out, n: int) -> None:
    print(json.dumps(out.summary()))
    assert out.sent == n and out.lost == 0 and out.error_5xx == 0 and out.bad_503 == 0 and out.rejected == 0, out.summary()
    assert out.answered + out.unavailable == n
    assert max(out.latencies_s) < WORST_CASE_S + 3, out.summary()


@pytest.mark.parametrize("how", ["ray.kill", "sigkill"])
def test_killing_a_base_model_replica_under_load(fault_app, how):
    before = set(replicas(APP, "llm-alpha"))

    async def kill():
        print("killed", kill_replica(APP, "llm-alpha", how))

    out = asyncio.run(drive(fault_app, 200, 16, chat_body, timeout_s=WORST_CASE_S + 5, during=kill, during_after=40))
    _no_request_lost(out, 200)
    # alpha is the only base model lost; on a busy machine a fusion may also pass its timeout (unfused)
    assert set(out.dropped_models) - {"fuser"} == {"alpha"} and out.degraded > 0 and out.full > 0
    _healthy_again(fault_app, "llm-alpha", before)


def test_killing_the_ranker_replica_follows_the_fallback_policy(fault_app):
    before = set(replicas(APP, "ranker"))

    def body(i):  # half the requests ask to fail fast, half for an unranked answer
        return chat_body(i, on_ranker_failure="fail" if i % 2 else "unranked")

    async def kill():
        print("killed", kill_replica(APP, "ranker"))

    out = asyncio.run(drive(fault_app, 200, 16, body, timeout_s=WORST_CASE_S + 5, during=kill, during_after=40))
    _no_request_lost(out, 200)
    assert out.flags.get("unranked", 0) > 0 and out.unavailable > 0, out.summary()
    assert "ranker failed" in out.examples["unavailable"]
    _healthy_again(fault_app, "ranker", before)


def test_killing_the_fuser_replica_answers_unfused(fault_app):
    before = set(replicas(APP, "fuser"))

    async def kill():
        print("killed", kill_replica(APP, "fuser", "sigkill"))

    out = asyncio.run(drive(fault_app, 200, 16, chat_body, timeout_s=WORST_CASE_S + 5, during=kill, during_after=40))
    _no_request_lost(out, 200)
    assert out.flags.get("unfused", 0) > 0 and out.unavailable == 0, out.summary()
    _healthy_again(fault_app, "fuser", before)


def test_an_ingress_replica_dying_under_load_errs_only_in_a_bounded_window(fault_app):
    """The ingress has two replicas: only requests inside the killed one fail; no connection hangs."""
    before = set(replicas(APP, "ingress"))
    failures: list[float] = []

    async def kill():
        print("killed", kill_replica(APP, "ingress", "sigkill"))

    t0 = time.perf_counter()
    out = asyncio.run(drive(fault_app, 200, 16, chat_body, timeout_s=WORST_CASE_S + 5, during=kill, during_after=40))
    print(json.dumps(out.summary()), f"in {time.perf_counter() - t0:.1f}s")
    failures = out.error_5xx + out.bad_503 + out.lost
    assert out.lost == 0, out.summary()  # no stuck connection
    assert failures <= 16, out.summary()  # at most the requests in flight at the kill
    assert out.answered >= 200 - 16
    _healthy_again(fault_app, "ingress", before)


def test_misbehaving_models_are_dropped_and_reported_while_the_ensemble_answers(fault_app):
    models = ["alpha", "empty", "huge", "raiser", "hanger", "mojibake"]
    t0 = time.perf_counter()
    body = chat_body(models=models, fusion="never")
    del body["max_tokens"]  # let the 1 MB answer through whole
    r = httpx.post(f"{fault_app}/v1/chat/completions", json=body, timeout=30)
    took = time.perf_counter() - t0
    assert r.status_code == 200, r.text
    prov = r.json()["blender"]
    errors = prov["errors"]
    print(took, json.dumps(errors)[:600])
    assert errors["empty"] == "returned an empty answer"
    assert "engine exploded" in errors["raiser"] and "deadline" in errors["hanger"]
    answered = {c["model"]: c["text"] for c in prov["candidates"]}
    assert len(answered["huge"]) > 1_000_000 and "alpha" in answered  # a 1 MB answer is ranked, not fatal
    # invalid UTF-8 from a remote server: either dropped with a reason or decoded with replacement characters
    assert "mojibake" in errors or "\ufffd" in answered.get("mojibake", "")
    assert took < 2.0 + 3.0 + 2  # the hanging model costs its deadline, no more
    assert httpx.get(f"{fault_app}/health", timeout=10).status_code == 200
    again = asyncio.run(drive(fault_app, 4, 4, chat_body))
    assert again.full == 4


def test_a_dead_engine_fails_its_health_check_and_serve_replaces_the_replica(fault_app):
    """'mortal' dies after 3 calls: its check_health fails, Serve starts a new replica, which serves."""
    before = set(replicas(APP, "llm-mortal"))
    body = {"model": "mortal", "messages": [{"role": "user", "content": "hi"}]}
    codes = [httpx.post(f"{fault_app}/v1/chat/completions", json=body, timeout=10).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 503]
    took = asyncio.run(wait_for_replicas(APP, "llm-mortal", other_than=before, timeout_s=60))
    print(f"dead engine replaced in {took:.1f}s")
    # The ingress may have seen the deployment down (DeploymentWatch): it looks again every 0.5 s then.
    for _ in range(20):
        r = httpx.post(f"{fault_app}/v1/chat/completions", json=body, timeout=10)
        if r.status_code == 200:
            break
        assert r.status_code == 503 and "no running replica" in r.text, r.text
        time.sleep(0.25)
    assert r.status_code == 200, r.text


def _stats(deployment: str) -> dict:
    from ray import serve

    return serve.get_deployment_handle(deployment, app_name=APP).stats.remote().result(timeout_s=10)


def test_a_client_leaving_mid_request_cancels_the_base_models_work(fault_app):
    """'slowpoke' takes 6 s to answer; the client leaves after 1 s; its call is cancelled at once."""
    before = _stats("llm-slowpoke")
    body = chat_body(models=["alpha", "slowpoke"], deadline_s=30, fusion="never")
    del body["max_tokens"]  # 60 words at 0.1 s each
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{fault_app}/v1/chat/completions", json=body, timeout=1.0)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        now = _stats("llm-slowpoke")
        if now["in_flight"] == 0 and now["cancelled"] > before["cancelled"]:
            break
        time.sleep(0.1)
    print("slowpoke before/after:", before, now)
    assert now["in_flight"] == 0 and now["cancelled"] == before["cancelled"] + 1
    assert now["succeeded"] == before["succeeded"]  # it never finished its 6 s answer


def test_a_client_leaving_mid_stream_stops_the_fuser_decoding(fault_app):
    body = {"instruction": "Write a long story.", "candidates": ["once upon a time", "there was a fox"],
            "stream": True, "max_new_tokens": 2000}
    before = _stats("fuser")
    with httpx.Client(timeout=30) as client:
        with client.stream("POST", f"{fault_app}/v1/fuse", json=body) as r:
            assert r.status_code == 200
            got = 0
            for piece in r.iter_text():
                got += len(piece)
                if got > 20:
                    break  # leave mid-stream: closing the response drops the connection
    t_left = time.monotonic()
    at_leave = _stats("fuser")
    time.sleep(1.5)
    after = _stats("fuser")
    print("fuser decode steps: before", before["decode_steps"], "at leave", at_leave["decode_steps"], "1.5 s later",
          after["decode_steps"], f"(stats read {time.monotonic() - t_left:.1f}s after leaving)")
    assert after["in_flight"] == 0 and after["cancelled"] == before["cancelled"] + 1
    # decoding stopped: far fewer than the 2000 tokens asked for, and (almost) nothing after leaving
    assert after["decode_steps"] - before["decode_steps"] < 500  # uncancelled, this fuser writes all 2000
    assert after["decode_steps"] - at_leave["decode_steps"] <= 10


def test_quorum_answers_without_the_slow_model_and_cancels_its_call(fault_app):
    before = _stats("llm-slowpoke")
    body = chat_body(models=["alpha", "beta", "slowpoke"], fusion="never", quorum=2, quorum_grace_s=0.1, deadline_s=30)
    del body["max_tokens"]  # slowpoke needs 6 s
    t0 = time.perf_counter()
    r = httpx.post(f"{fault_app}/v1/chat/completions", json=body, timeout=30)
    took = time.perf_counter() - t0
    assert r.status_code == 200, r.text
    prov = r.json()["blender"]
    assert prov["skipped"] == ["slowpoke"] and sorted(c["model"] for c in prov["candidates"]) == ["alpha", "beta"]
    assert took < 3, took
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (now := _stats("llm-slowpoke"))["in_flight"]:
        time.sleep(0.1)
    assert now["in_flight"] == 0 and now["cancelled"] == before["cancelled"] + 1


def test_a_model_past_its_deadline_has_its_call_cancelled_not_left_running(fault_app):
    before = _stats("llm-slowpoke")
    body = chat_body(models=["alpha", "slowpoke"], fusion="never", deadline_s=1.0)
    del body["max_tokens"]  # slowpoke needs 6 s
    r = httpx.post(f"{fault_app}/v1/chat/completions", json=body, timeout=30)
    assert r.status_code == 200 and "deadline" in r.json()["blender"]["errors"]["slowpoke"]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (now := _stats("llm-slowpoke"))["in_flight"]:
        time.sleep(0.1)
    assert now["in_flight"] == 0 and now["cancelled"] == before["cancelled"] + 1
