"""Every metric (and label) the Grafana dashboard reads is really exported by Ray for a served app:
deploy/grafana/blender-serve.json checked against Ray's Prometheus endpoint after real requests."""

from __future__ import annotations

import os
import time

import httpx

from blender_serve.testing.dashboard import load_dashboard, missing_series


def test_every_dashboard_series_is_exported(blender_app):
    for content in ("chart me", "and me"):
        r = httpx.post(f"{blender_app}/v1/chat/completions", timeout=60,
                       json={"model": "blender", "messages": [{"role": "user", "content": content}]})
        assert r.status_code == 200
    dashboard = load_dashboard()
    url = f"http://127.0.0.1:{os.environ['BLENDER_TEST_METRICS_PORT']}/metrics"
    deadline, problems = time.monotonic() + 90, ["not scraped yet"]
    while time.monotonic() < deadline:  # Ray exports every few seconds; Serve's controller gauges a bit later
        try:
            problems = missing_series(dashboard, httpx.get(url, timeout=10).text)
        except httpx.HTTPError as exc:
            problems = [f"scrape failed: {exc}"]
        if not problems:
            break
        time.sleep(3)
    assert problems == [], "\n".join(problems)
