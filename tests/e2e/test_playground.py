"""The playground page (/ui) in a real headless chromium against the served test ensemble: what
the page shows matches what the API returns for the same request, and the console stays clean.

Needs Debian's chromium and chromedriver (scripts/browser.sh) and selenium. Where they are missing
the tests skip, unless BLENDER_REQUIRE_BROWSER is set (scripts/test.sh and CI set it): then they fail.
"""

from __future__ import annotations

import os

import httpx
import pytest

from blender_serve.testing.browser import ask_playground, browser_missing, chromium, console_errors

PROMPT = "Why is the sky blue?"


@pytest.fixture(scope="module")
def browser():
    why = browser_missing()
    if why:
        if os.environ.get("BLENDER_REQUIRE_BROWSER"):
            pytest.fail(f"BLENDER_REQUIRE_BROWSER is set but {why}")
        pytest.skip(why)
    with chromium() as driver:
        yield driver


@pytest.fixture(scope="module")
def page(browser, blender_app):
    """The page, open on the test app (alpha, beta, a failing 'broken', a late 'slow')."""
    browser.get(f"{blender_app}/ui")
    return browser


@pytest.fixture(scope="module")
def slow_fusion_app(deploy):
    """An app whose fuser waits 1.5 s before its first word, then one word per 0.2 s: the ranked
    candidates are on the page well before the answer (scripted models, ranker and fuser)."""
    zero = {"ray_actor_options": {"num_cpus": 0}}
    gens = [{"name": "alpha", "backend": "scripted", "options": {"template": "alpha says: {prompt}", "latency_s": 0.05}},
            {"name": "beta", "backend": "scripted", "options": {"template": "beta gives a longer answer about {prompt}"}}]
    args = {"ensemble": {"name": "blender", "generators": gens, "ranker": {"kind": "scripted", "path": "scripted"},
                         "fuser": {"kind": "scripted", "path": "scripted", "max_new_tokens": 8,
                                   "options": {"latency_s": 1.5, "token_latency_s": 0.2}},
                         "fusion": "always", "top_k": 2, "deadline_s": 10.0},
            "deployments": {"alpha": zero, "beta": zero, "ranker": zero, "fuser": zero, "ingress": zero}}
    return deploy(args, "slowfuse")


def _shown(driver) -> dict:
    """What the page shows, read from the DOM (textContent: whitespace as sent)."""
    return driver.execute_script("""
        const q = (s) => [...document.querySelectorAll(s)];
        return {
          url: location.pathname,
          answer: document.getElementById('answer').textContent,
          fusion: document.getElementById('fusion-badge').textContent,
          fusionDetail: document.getElementById('fusion-detail').textContent,
          state: document.body.dataset.state,
          candidates: q('#candidates .candidate:not(.failed)').map(c => ({
              model: c.dataset.model, text: c.querySelector('.text').textContent,
              meta: c.querySelector('.meta').textContent,
              ttft: (c.querySelector('.ttft') || {}).textContent || null})),
          failed: q('#candidates .candidate.failed').map(c => [c.dataset.model, c.querySelector('.text').textContent]),
          rows: q('#matrix tr[data-model]').map(r => r.dataset.model),
          cells: q('#matrix td.cell:not(.diag)').map(c => Number(c.dataset.value)),
          heat: q('#matrix td.cell:not(.diag)').map(c => c.style.backgroundColor),
          matrixNote: document.getElementById('matrix').textContent,
          stages: q('#timings tr[data-stage]').map(r => r.dataset.stage),
        };""")


def _api(url: str, **blender) -> dict:
    r = httpx.post(f"{url}/v1/chat/completions", timeout=60, json={
        "model": "blender", "messages": [{"role": "user", "content": PROMPT}], "blender": blender})
    assert r.status_code == 200, r.text
    return r.json()


def test_ask_shows_candidates_matrix_and_the_streamed_answer_as_the_api_returns_them(page, blender_app):
    options = {"models": ["alpha", "beta", "broken"], "top_k": 2, "strategy": "max_logits", "fusion": "always",
               "deadline_s": 5}
    status = ask_playground(page, blender_app, PROMPT, models=options["models"],
                            selects={"strategy": "max_logits", "fusion": "always"},
                            numbers={"top_k": 2, "deadline_s": 5})
    assert status.startswith("done")
    shown = _shown(page)
    expected = _api(blender_app, **options)  # the app's fuser is greedy: the same answer again
    prov = expected["blender"]

    assert shown["url"] == "/ui/"
    assert shown["answer"] and shown["answer"] == expected["choices"][0]["message"]["content"]
    assert [c["model"] for c in shown["candidates"]] == [c["model"] for c in prov["candidates"]] \
        and len(shown["candidates"]) == 2
    assert [c["text"] for c in shown["candidates"]] == [c["text"] for c in prov["candidates"]]
    for card, cand in zip(shown["candidates"], prov["candidates"]):
        assert f"{cand['usage']['completion_tokens']} tok out" in card["meta"] and "score" in card["meta"]
    assert shown["failed"] == [["broken", prov["errors"]["broken"]]] and "simulated outage" in shown["failed"][0][1]
    # The heat map: one row per candidate, n(n-1) coloured cells holding the ranker's logits.
    assert shown["rows"] == [c["model"] for c in prov["candidates"]]
    off_diagonal = [v for i, row in enumerate(prov["matrix"]) for j, v in enumerate(row) if i != j]
    assert shown["cells"] == pytest.approx(off_diagonal) and all(shown["heat"])
    assert shown["fusion"] == "fused" and "alpha" in shown["fusionDetail"] and "beta" in shown["fusionDetail"]
    assert shown["stages"] == ["generate", "rank", "fuse"]
    assert console_errors(page) == []


def test_skipped_fusion_says_why_and_a_strategy_without_matrix_says_so(page, blender_app):
    ask_playground(page, blender_app, PROMPT, models=["alpha", "beta"], selects={"strategy": "bubble", "fusion": "never"},
                   numbers={"top_k": 2, "deadline_s": 5}, stream=False)
    shown = _shown(page)
    expected = _api(blender_app, models=["alpha", "beta"], strategy="bubble", fusion="never", top_k=2, deadline_s=5)
    assert shown["answer"] == expected["choices"][0]["message"]["content"] == expected["blender"]["candidates"][0]["text"]
    assert shown["fusion"] == "not fused" and expected["blender"]["fusion_skipped_reason"] in shown["fusionDetail"]
    assert [c["model"] for c in shown["candidates"]] == [c["model"] for c in expected["blender"]["candidates"]]
    assert shown["cells"] == [] and "computes no full matrix" in shown["matrixNote"]
    assert shown["failed"] == []
    assert console_errors(page) == []


def test_a_refused_request_is_reported_on_the_page(page, blender_app):
    # Only the failing model: the API answers 503 with its per-model error, and the page shows it.
    with pytest.raises(RuntimeError, match="simulated outage"):
        ask_playground(page, blender_app, PROMPT, models=["broken"], selects={"fusion": "never", "strategy": "max_logits"},
                       numbers={"top_k": 1, "deadline_s": 5})
    # chromium logs the failed fetch (503) itself; nothing else may have gone wrong.
    assert all("503" in e for e in console_errors(page))


def test_candidates_and_the_heat_map_show_while_the_answer_is_still_coming(page, slow_fusion_app, blender_app):
    from selenium.webdriver.support.ui import WebDriverWait

    page.get(f"{slow_fusion_app}/ui")
    try:
        ask_playground(page, slow_fusion_app, PROMPT, numbers={"top_k": 2}, wait=False)
        WebDriverWait(page, 60).until(lambda d: d.execute_script("return document.body.dataset.progress") == "ranked")
        early = _shown(page)
        WebDriverWait(page, 60).until(lambda d: d.execute_script("return document.body.dataset.state") in ("done", "error"))
        final = _shown(page)
    finally:
        page.get(f"{blender_app}/ui")  # the other tests use the main app's page
    # Ranked, fusion decided, the answer not begun: the fuser is still in its 1.5 s wait.
    assert early["state"] == "running" and early["answer"] == ""
    assert sorted(c["model"] for c in early["candidates"]) == ["alpha", "beta"]
    assert all(c["text"] and "score" in c["meta"] and c["ttft"].startswith("ttft ") for c in early["candidates"])
    assert early["rows"] == [c["model"] for c in early["candidates"]] and len(early["cells"]) == 2 and all(early["heat"])
    assert early["fusion"] == "fusing…" and "alpha" in early["fusionDetail"] and "beta" in early["fusionDetail"]
    # Then the answer streams in and the final provenance completes the view (same ranking, the fuse stage).
    assert final["state"] == "done" and final["answer"] and final["fusion"] == "fused"
    assert [(c["model"], c["text"]) for c in final["candidates"]] == [(c["model"], c["text"]) for c in early["candidates"]]
    assert final["cells"] == early["cells"] and final["stages"] == ["generate", "rank", "fuse"]
    assert all(c["ttft"] for c in final["candidates"])
    assert console_errors(page) == []
