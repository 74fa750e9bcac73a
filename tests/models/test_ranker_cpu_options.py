"""The CPU ranker's speed options: int8 linear layers, and the batch cap chosen from the model's width.

Their speed and agreement on a realistic shape are measured by ``python -m bench rank_cpu``; here,
that they load through the user's path, change what they say, stay close to fp32, and refuse
what they cannot do."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from blender_serve.errors import InvalidInputError
from blender_serve.ranker import PairRanker, cpu_batch_tokens

SOURCE = "Which answer is best?"
CANDS = ["first answer", "a second, longer answer with more words", "third", "the fourth one", "5"]


@pytest.mark.parametrize("hidden, cap", [(32, 4096), (64, 2048), (384, 1024), (1024, 512), (4096, 256)])
def test_the_cpu_batch_cap_shrinks_as_the_model_widens(hidden, cap):
    assert cpu_batch_tokens(hidden) == cap


def test_the_default_cap_follows_the_backbone(pairrm_original):
    ranker = PairRanker.from_pretrained(pairrm_original, device="cpu")
    hidden = ranker.model.pretrained_model.config.hidden_size
    assert ranker.max_batch_tokens == cpu_batch_tokens(hidden)
    assert PairRanker.from_pretrained(pairrm_original, device="cpu", max_batch_tokens=300).max_batch_tokens == 300


def test_int8_quantizes_the_backbone_linears_and_keeps_the_head_float(pairrm_original):
    ranker = PairRanker.from_pretrained(pairrm_original, device="cpu", dtype="float32", quantize="int8")
    kinds = {type(m).__module__ for m in ranker.model.pretrained_model.modules() if type(m).__name__ == "Linear"}
    assert kinds == {"torch.ao.nn.quantized.dynamic.modules.linear"}
    assert all(type(m) is torch.nn.Linear for m in ranker.model.head_layer.modules() if "Linear" in type(m).__name__)
    assert not any(type(m) is torch.nn.Linear for m in ranker.model.pretrained_model.modules())


def test_int8_scores_stay_close_to_fp32(pairrm_original):
    # One pair per pass on both sides: only the quantization moves the numbers.
    full = PairRanker.from_pretrained(pairrm_original, device="cpu", dtype="float32", batch_size=1)
    int8 = PairRanker.from_pretrained(pairrm_original, device="cpu", dtype="float32", batch_size=1, quantize="int8")
    a, b = full.rank(SOURCE, CANDS), int8.rank(SOURCE, CANDS)
    assert not np.allclose(a.scores, b.scores, atol=1e-7), "quantization changed nothing: is it applied?"
    assert np.corrcoef(a.scores, b.scores)[0, 1] > 0.95
    assert b.order[0] == a.order[0]


def test_int8_passes_through_the_config(pairrm_original):
    from blender_serve.config import RankerConfig

    ranker = PairRanker.from_config(RankerConfig(path=str(pairrm_original), device="cpu", quantize="int8"))
    assert ranker.quantize == "int8"


@pytest.mark.parametrize("kwargs, says", [
    ({"dtype": "bfloat16", "quantize": "int8"}, "float32"),
    ({"quantize": "int4"}, "unknown quantize"),
])
def test_what_int8_cannot_do_is_refused(pairrm_original, kwargs, says):
    with pytest.raises(InvalidInputError, match=says):
        PairRanker.from_pretrained(pairrm_original, device="cpu", **kwargs)


def test_a_quantized_ranker_is_not_saved(pairrm_original, tmp_path):
    ranker = PairRanker.from_pretrained(pairrm_original, device="cpu", quantize="int8")
    with pytest.raises(InvalidInputError, match="quantized"):
        ranker.save_pretrained(tmp_path / "out")
