"""Per-stage latency histograms and per-model counters reach Ray's Prometheus endpoint."""

from __future__ import annotations

import os
import time

import httpx


def test_stage_histograms_and_model_counters_are_exported(blender_app):
    r = httpx.post(f"{blender_app}/v1/chat/completions", timeout=60,
                   json={"model": "blender", "messages": [{"role": "user", "content": "count me"}]})
    assert r.status_code == 200
    url = f"http://127.0.0.1:{os.environ['BLENDER_TEST_METRICS_PORT']}/metrics"
    deadline, text = time.monotonic() + 60, ""
    while time.monotonic() < deadline:  # Ray exports metrics every few seconds
        try:
            text = httpx.get(url, timeout=5).text
        except httpx.HTTPError:
            text = ""
        # Other apps of this session export the same metric names: wait for this request's own series.
        if 'model="broken"' in text and 'model="alpha"' in text and "blender_stage_latency_s_bucket" in text:
            break
        time.sleep(2)
    assert 'blender_stage_latency_s_bucket' in text and 'stage="rank"' in text
    assert 'blender_model_calls' in text and 'model="alpha"' in text
    assert 'blender_model_failures' in text and 'model="broken"' in text
    assert 'blender_model_ranked_first' in text
