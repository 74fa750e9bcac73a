"""The DeBERTa fast attention (sdpa, flex) against transformers' own, on small real DeBERTa-v2 models."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch

from blender_serve.config import RankerConfig
from blender_serve.errors import InvalidInputError
from blender_serve.ranker import PairRanker
from blender_serve.ranker.fast_attention import DebertaFastSelfAttention, use_fast_attention
from blender_serve.testing import tiny_models

pytestmark = [pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")]

ATOL = 1e-5
SOURCE = "Which answer explains it best? " * 3
CANDS = ["first answer", "a second, longer answer with more words " * 4, "third", "the fourth one " * 10, "5"]

# (position_buckets, max_relative_positions, pos_att_type, share_att_key, length). Lengths pass the
# log-bucket threshold (buckets / 2) or the clamp at max_relative_positions, so every branch of the
# position indices is read.
CONFIGS = {
    "v3": (256, -1, ["p2c", "c2p"], True, 150),
    "no-buckets": (0, -1, ["p2c", "c2p"], True, 40),
    "c2p-only": (16, -1, ["c2p"], True, 40),
    "p2c-only": (16, -1, ["p2c"], True, 40),
    "own-pos-proj": (16, -1, ["p2c", "c2p"], False, 40),
    "clamped": (0, 12, ["p2c", "c2p"], True, 40),
}


def _model(buckets, max_rel, kinds, share, hidden=32, heads=4, layers=2, seed=0):
    """A DeBERTa-v2 with standard-scale layer weights (std 0.05), wide embeddings (std 0.5) and wider
    query/key projections (std 0.25), so attention is far from uniform and position terms matter."""
    from transformers import DebertaV2Model

    config = tiny_models.deberta_config(300, hidden=hidden, layers=layers, heads=heads)
    config.update({"position_buckets": buckets, "max_relative_positions": max_rel, "pos_att_type": kinds,
                   "share_att_key": share, "norm_rel_ebd": "layer_norm", "max_position_embeddings": 256})
    torch.manual_seed(seed)
    model = DebertaV2Model(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.5 if "embeddings" in name else 0.25 if ("query_proj" in name or "key_proj" in name) else 0.05)
    return model


def _batch(length, seed=0):
    """Three rows of different lengths: full, half and 5 tokens (padding in two of them)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 300, (3, length), generator=g)
    mask = torch.ones(3, length, dtype=torch.long)
    mask[1, length // 2:] = 0
    mask[2, 5:] = 0
    return ids, mask


def _hidden(model, ids, mask):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask).last_hidden_state


def _fast(model, impl):
    fast = copy.deepcopy(model)
    assert use_fast_attention(fast, impl) == model.config.num_hidden_layers
    return fast


@pytest.mark.parametrize("impl", ["sdpa", "flex"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_fast_attention_equals_transformers(name, impl):
    *spec, length = CONFIGS[name]
    model = _model(*spec)
    ids, mask = _batch(length)
    expected = _hidden(model, ids, mask)
    got = _hidden(_fast(model, impl), ids, mask)
    assert got.shape == expected.shape
    # every position, padded rows included (they average over all keys, as transformers' do)
    assert (got - expected).abs().max().item() < ATOL


@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")  # inductor's imports
def test_flex_compiles_as_on_a_gpu(monkeypatch):
    """On accelerators flex_attention runs compiled (dynamic shapes); compile it here on CPU the same
    way, so the score_mod is checked through dynamo and inductor too: same numbers, one graph for
    every layer and length."""
    from torch.nn.attention.flex_attention import flex_attention

    from blender_serve.ranker import fast_attention

    compiled = torch.compile(flex_attention, dynamic=True)
    monkeypatch.setattr(fast_attention, "_flex", lambda q: compiled)
    model = _model(*CONFIGS["v3"][:-1], layers=1)
    fast = _fast(model, "flex")
    for length in (CONFIGS["v3"][-1], 37):
        ids, mask = _batch(length)
        assert (_hidden(fast, ids, mask) - _hidden(model, ids, mask)).abs().max().item() < ATOL


@pytest.mark.parametrize("dropped", ["c2p", "p2c"])
def test_the_relative_terms_weigh_far_more_than_the_tolerance(dropped):
    """Guard for the test above: without one relative term the output moves by far more than ATOL,
    so equality to 1e-5 means each term is reproduced, not merely small."""
    model = _model(*CONFIGS["v3"][:-1])
    ids, mask = _batch(CONFIGS["v3"][-1])
    expected = _hidden(model, ids, mask)
    fast = _fast(model, "sdpa")
    for module in fast.modules():
        if isinstance(module, DebertaFastSelfAttention):
            module.pos_att_type = tuple(t for t in module.pos_att_type if t != dropped)  # scale unchanged
    change = (_hidden(fast, ids, mask) - expected).abs().max().item()
    assert change > 1000 * ATOL, change


def test_the_log_buckets_weigh_far_more_than_the_tolerance():
    """Guard: in config "v3" the pairs past the log-bucket threshold change the output visibly."""
    *spec, length = CONFIGS["v3"]
    model = _model(*spec)
    ids, mask = _batch(length)
    linear = copy.deepcopy(model)
    linear.encoder.position_buckets = 0  # the encoder's relative positions, unbucketed; same tables
    change = (_hidden(linear, ids, mask) - _hidden(model, ids, mask)).abs().max().item()
    assert change > 1000 * ATOL, change


def test_attention_probabilities_and_weights_are_kept():
    model = _model(*CONFIGS["v3"][:-1])
    ids, mask = _batch(40)
    names = [n for n, _ in model.named_parameters()]
    fast = _fast(model, "sdpa")
    assert [n for n, _ in fast.named_parameters()] == names
    assert set(fast.state_dict()) == set(model.state_dict())
    with torch.no_grad():
        want = model(input_ids=ids, attention_mask=mask, output_attentions=True).attentions
        got = fast(input_ids=ids, attention_mask=mask, output_attentions=True).attentions
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert (a - b).abs().max().item() < ATOL
    # a second install switches the implementation of the modules already swapped
    assert use_fast_attention(fast, "flex") == 2
    assert {m.impl for m in fast.modules() if isinstance(m, DebertaFastSelfAttention)} == {"flex"}
    assert use_fast_attention(fast, "eager") == 0


@pytest.fixture(scope="module")
def eager_ranker(pairrm_original):
    return PairRanker.from_pretrained(pairrm_original, device="cpu", batch_size=1)


@pytest.mark.parametrize("impl", ["sdpa", "flex"])
def test_a_ranker_with_fast_attention_ranks_like_the_eager_one(pairrm_original, eager_ranker, impl):
    fast = PairRanker.from_pretrained(pairrm_original, device="cpu", batch_size=1, attention=impl)
    assert sum(isinstance(m, DebertaFastSelfAttention) for m in fast.model.modules()) == 2
    want, got = eager_ranker.rank(SOURCE, CANDS), fast.rank(SOURCE, CANDS)
    matrix = np.array(want.matrix, dtype=float)
    assert np.nanmax(np.abs(matrix)) > 0.1  # logits large enough for 1e-5 to mean something
    np.testing.assert_allclose(np.array(got.matrix, dtype=float), matrix, atol=ATOL)
    np.testing.assert_allclose(got.scores, want.scores, atol=ATOL)
    assert got.order == want.order


def test_ranker_config_passes_the_attention_through(pairrm_original, eager_ranker):
    ranker = PairRanker.from_config(RankerConfig(path=str(pairrm_original), device="cpu", batch_size=4, attention="sdpa"))
    assert any(isinstance(m, DebertaFastSelfAttention) for m in ranker.model.modules())
    np.testing.assert_allclose(ranker.rank(SOURCE, CANDS).scores, eager_ranker.rank(SOURCE, CANDS).scores, atol=ATOL)
    assert RankerConfig(path="x").attention == "eager"
    with pytest.raises(Exception, match="attention"):
        RankerConfig(path="x", attention="fast")


def test_the_installer_refuses_what_it_does_not_cover(pairrm_original):
    from transformers import BertConfig, BertModel

    bert = BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                intermediate_size=32))
    with pytest.raises(InvalidInputError, match="needs a DeBERTa-v2/v3 backbone.*bert.*attention='eager'"):
        use_fast_attention(bert, "sdpa")
    assert use_fast_attention(bert, "eager") == 0
    with pytest.raises(InvalidInputError, match="unknown attention implementation 'fast'"):
        use_fast_attention(_model(16, -1, ["c2p"], True), "fast")
    with pytest.raises(InvalidInputError, match="pos_att_type.*not covered"):
        use_fast_attention(_model(16, -1, ["c2p", "p2p"], True), "flex")
    with pytest.raises(InvalidInputError, match="unknown attention 'fast'"):
        PairRanker.from_pretrained(pairrm_original, device="cpu", attention="fast")


def test_flex_refuses_attention_dropout_in_training():
    model = _model(16, -1, ["c2p", "p2c"], True)
    fast = _fast(model, "flex").train()
    ids, mask = _batch(20)
    with warnings.catch_warnings(), pytest.raises(InvalidInputError, match="no attention dropout"):
        warnings.simplefilter("ignore")
        fast(input_ids=ids, attention_mask=mask)
