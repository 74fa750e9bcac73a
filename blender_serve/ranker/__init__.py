"""PairRanker: pairwise cross-encoder ranking (both PairRM layouts), batched scoring, strategies."""

from blender_serve.ranker.aggregation import (
    STRATEGIES,
    Ranking,
    Strategy,
    get_strategy,
    max_logits_scores,
    max_wins_scores,
    register_strategy,
)
from blender_serve.ranker.layout import PREFIX_TOKENS
from blender_serve.ranker.ranker import COMPARE_MODES, QUANTIZE_MODES, PairRanker, cpu_batch_tokens
from blender_serve.ranker.scripted import ScriptedRanker

__all__ = [
    "PairRanker", "ScriptedRanker", "build_ranker", "COMPARE_MODES", "PREFIX_TOKENS", "STRATEGIES", "Ranking", "Strategy", "get_strategy",
    "max_logits_scores", "max_wins_scores", "register_strategy", "QUANTIZE_MODES", "cpu_batch_tokens",
]


def build_ranker(config):
    """The ranker a RankerConfig describes: a loaded PairRanker, or (kind 'scripted') a ScriptedRanker."""
    return ScriptedRanker.from_config(config) if config.kind == "scripted" else PairRanker.from_config(config)
