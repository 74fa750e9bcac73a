"""The playground page's static files (deployments/ui) as the router serves them, without Ray or a
browser (tests/e2e/test_playground.py drives the page itself), and the pairwise matrix that the
page reads from the provenance."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from blender_serve.pipeline import Blender, assemble_result
from blender_serve.types import Generation, RankResult
from deployments.config import AppArgs
from deployments.router import app, current_serving
from deployments.serving import BlenderServing

UI = Path(__file__).resolve().parents[2] / "deployments" / "ui"


@pytest.fixture
def client():
    args = AppArgs.model_validate({"ensemble": {"name": "blender", "ranker": {"path": "/unused"}, "fusion": "never",
                                                "generators": [{"name": "alpha", "backend": "scripted"}]}})
    serving = BlenderServing(args, Blender(args.ensemble, ranker=object()))
    app.dependency_overrides[current_serving] = lambda: serving
    yield TestClient(app, raise_server_exceptions=False)
    app.dependency_overrides.pop(current_serving, None)


def test_ui_redirects_to_the_page_and_serves_its_files(client):
    r = client.get("/ui", follow_redirects=False)
    assert r.status_code in (307, 308) and r.headers["location"].endswith("/ui/")
    page = client.get("/ui/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for name, kind in (("app.js", "javascript"), ("style.css", "text/css")):
        r = client.get(f"/ui/{name}")
        assert r.status_code == 200 and kind in r.headers["content-type"], name
        assert name in page.text
    assert client.get("/ui/missing.js").status_code == 404


def test_the_page_fetches_nothing_from_elsewhere_and_its_ids_exist():
    html, js = (UI / "index.html").read_text(), (UI / "app.js").read_text()
    for name in ("index.html", "app.js", "style.css"):
        assert not re.search(r"https?://|//cdn|@import", (UI / name).read_text()), f"{name} reaches outside the app"
    all_ids = re.findall(r'id="([\w-]+)"', html)
    ids = set(all_ids)
    assert len(ids) == len(all_ids), f"ids used twice: {sorted(i for i in ids if all_ids.count(i) > 1)}"
    used = set(re.findall(r'\$\("([\w-]+)"\)', js))
    assert used and used <= ids, f"app.js uses ids the page lacks: {sorted(used - ids)}"


def test_the_option_menus_offer_what_the_api_accepts():
    from blender_serve.config import BlendOptions
    from blender_serve.ranker.aggregation import STRATEGIES

    html = (UI / "index.html").read_text()

    def menu(name: str) -> set[str]:
        block = re.search(rf'<select id="{name}">(.*?)</select>', html, flags=re.S).group(1)
        return set(re.findall(r'<option value="(\w*)"', block)) - {""}

    assert menu("strategy") == set(STRATEGIES)  # a new strategy needs its <option> too
    for name in ("fusion", "on_ranker_failure"):
        literal = BlendOptions.model_fields[name].annotation.__args__[0]  # Optional[Literal[...]]
        assert menu(name) == set(literal.__args__), name
    inputs = set(re.findall(r'<(?:input|select) id="(\w+)"', html))
    assert set(BlendOptions.model_fields) - {"models"} <= inputs, "a blender option has no control on the page"


def test_provenance_matrix_follows_the_candidates_rank_order():
    gens = [Generation(model=m, text=f"{m} text") for m in ("a", "b", "c")]
    M = [[0.0, -1.0, 2.0], [1.0, 0.0, 3.0], [-2.0, -3.0, 0.0]]  # input order: b > a > c
    ranking = RankResult(order=[1, 0, 2], scores=[0.5, 2.0, -2.5], strategy="max_logits", matrix=M)
    result = assemble_result(gens, ranking, [1, 0], None, skipped="fusion disabled", strategy="max_logits",
                             errors={}, timings={})
    assert [c.model for c in result.candidates] == ["b", "a", "c"]
    assert result.matrix == [[0.0, 1.0, 3.0], [-1.0, 0.0, 2.0], [-3.0, -2.0, 0.0]]
    assert result.provenance().matrix == result.matrix
    no_matrix = RankResult(order=[1, 0, 2], scores=[0.5, 2.0, -2.5], strategy="bubble")
    assert assemble_result(gens, no_matrix, [1], None, skipped="x", strategy="bubble", errors={}, timings={}).matrix is None
