"""The handle API: blend, rank, compare and fuse through serve.get_app_handle, with typed models."""

from __future__ import annotations

import pytest

from blender_serve.errors import InvalidInputError
from blender_serve.types import BlendResult, ChatMessage


@pytest.fixture(scope="module")
def handle(blender_app):
    from ray import serve

    return serve.get_app_handle("blender")


def test_blend(handle):
    from deployments.protocol import BlendRequest

    req = BlendRequest(messages=[ChatMessage(role="user", content="What is 2+2?")], options={"models": ["alpha", "beta"], "fusion": "never"})
    result = handle.blend.remote(req).result(timeout_s=60)
    assert isinstance(result, BlendResult) and not result.fused
    assert result.text == result.candidates[0].text and {c.model for c in result.candidates} == {"alpha", "beta"}


def test_rank_matches_the_library(handle, pairrm_original):
    from blender_serve.ranker import PairRanker
    from deployments.protocol import RankRequest

    cands = ["Paris", "Rome is the capital", "I think it is Paris, France."]
    got = handle.rank.remote(RankRequest(source="Capital of France?", candidates=cands)).result(timeout_s=60)
    local = PairRanker.from_pretrained(pairrm_original, device="cpu").rank("Capital of France?", cands)
    assert got.order == local.order and got.scores == pytest.approx(local.scores, abs=1e-4)
    assert got.ranks == local.ranks


def test_compare_and_fuse(handle):
    from deployments.protocol import CompareRequest, FuseRequest

    c = handle.compare.remote(CompareRequest(source="q", candidate_a="yes", candidate_b="no")).result(timeout_s=60)
    assert c.better == ("a" if c.logit > 0 else "b")
    f = handle.fuse.remote(FuseRequest(instruction="Name a colour", candidates=["red", "blue"])).result(timeout_s=60)
    assert f.text and f.usage.completion_tokens > 0


@pytest.mark.parametrize("method, request_", [
    ("rank", {"source": "q", "candidates": ["a", "b"], "strategy": "nope"}),
    ("rank", {"source": "q", "candidates": "not a list"}),
    ("blend", {"messages": "hi"}),
    ("blend", {"messages": [{"role": "user", "content": "hi"}], "sampling": {"temperature": -1}}),
    ("compare", {"source": "q", "candidate_a": "x"}),
    ("fuse", {"instruction": "q", "candidates": []}),
    ("fuse", {"instruction": "q", "candidates": ["a", "b"], "stream": True}),
])
def test_bad_handle_input_raises_a_typed_error(handle, method, request_):
    with pytest.raises(InvalidInputError):
        getattr(handle, method).remote(request_).result(timeout_s=60)
