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
from blender_serve.ranker.ranker import COMPARE_MODES, PairRanker

__all__ = [
    "PairRanker", "COMPARE_MODES", "PREFIX_TOKENS", "STRATEGIES", "Ranking", "Strategy", "get_strategy",
    "max_logits_scores", "max_wins_scores", "register_strategy",
]
