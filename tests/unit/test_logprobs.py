"""token_logprob: the log-softmax of raw logits, the chosen token's entry and the top alternatives."""

import math

import numpy as np
import pytest

from blender_serve.logprobs import token_logprob

VOCAB = [b"a", b"b", b"c", b"\xc3", b"d"]  # b"\xc3": half of a two-byte character


def test_entries_are_the_log_softmax_most_likely_first():
    logits = np.array([2.0, 0.5, 3.0, -1.0, 0.2], dtype=np.float32)
    entry = token_logprob(logits, 1, 3, VOCAB.__getitem__)
    norm = math.log(sum(math.exp(x) for x in logits.tolist()))
    assert entry.token == "b" and entry.bytes == [98] and entry.logprob == pytest.approx(0.5 - norm)
    assert [e.token for e in entry.top_logprobs] == ["c", "a", "b"]
    assert [e.logprob for e in entry.top_logprobs] == pytest.approx([3.0 - norm, 2.0 - norm, 0.5 - norm])
    assert sum(math.exp(e.logprob) for e in token_logprob(logits, 0, 5, VOCAB.__getitem__).top_logprobs) == \
        pytest.approx(1.0)


def test_a_partial_character_keeps_its_bytes_and_huge_logits_stay_finite():
    entry = token_logprob(np.array([1e4, 0.0, 0.0, 1e4, -1e4]), 3, 0, VOCAB.__getitem__)
    assert entry.token == "\ufffd" and entry.bytes == [0xC3] and entry.top_logprobs == []
    assert entry.logprob == pytest.approx(-math.log(2))
