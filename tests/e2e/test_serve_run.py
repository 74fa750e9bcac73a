"""`serve run` of a config file as a subprocess: queried over HTTP, shut down cleanly by SIGINT."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest
import yaml

from blender_serve.testing.apps import free_port


ROOT = Path(__file__).resolve().parents[2]


LLAMA_CPP = importlib.util.find_spec("llama_cpp") is not None or os.environ.get("BLENDER_REQUIRE_LLAMA_CPP") == "1"


@pytest.mark.slow
@pytest.mark.parametrize("config_file", [
    "cpu.yaml",
    pytest.param("cpu-llama-cpp.yaml", marks=pytest.mark.skipif(
        not LLAMA_CPP, reason="llama-cpp-python is not installed (opt-in: bash scripts/llama_cpp.sh)")),
])
def test_serve_run_cpu_config_subprocess(tmp_path, config_file):
    """The CPU demo configs as shipped (real SmolLM2 x3 on transformers or on llama.cpp from the GGUF,
    MiniLM ranker, SmolLM2 fusion), on a free port."""
    port = free_port()
    config = yaml.safe_load((ROOT / "configs" / config_file).read_text())
    config["http_options"]["port"] = port
    path = tmp_path / "serve_config.yaml"
    path.write_text(yaml.safe_dump(config))
    ray_tmp = tempfile.mkdtemp(prefix="bsr-", dir="/tmp")  # Ray's socket paths must stay under 107 bytes
    env = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_TMPDIR=ray_tmp, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    serve_bin = Path(sys.executable).parent / "serve"
    # Output to a file, not a pipe: nobody reads a pipe while the app runs, and once its buffer is
    # full (Ray logs every replica's model loading) `serve run` blocks on a write, e.g. mid-exit.
    log_path = tmp_path / "serve_run.log"
    log = open(log_path, "w")
    # A fresh session of its own, so SIGINT reaches serve run and not this test; SIGINT back to its
    # default, since a suite started from a background job (nohup, `cmd &`) inherits it ignored, and
    # serve run would then never stop.
    proc = subprocess.Popen([str(serve_bin), "run", str(path)], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            assert proc.poll() is None, log_path.read_text()[-3000:]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        else:
            pytest.fail("serve run did not become ready in 300 s")
        r = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=300,
                       json={"model": "blender", "messages": [{"role": "user", "content": "What is the capital of France?"}],
                             "max_tokens": 24})
        assert r.status_code == 200, r.text
        body = r.json()
        assert sorted(c["model"] for c in body["blender"]["candidates"]) == ["smol-concise", "smol-creative", "smol-greedy"]
        assert body["blender"]["fused"] and body["choices"][0]["message"]["content"].strip()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=120)  # Serve drains each replica: give a loaded 2-core box time
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                pytest.fail(f"serve run did not exit within 120 s of SIGINT; its last output:\n{log_path.read_text()[-3000:]}")
        log.close()
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert proc.returncode in (0, -signal.SIGINT, 130), proc.returncode
