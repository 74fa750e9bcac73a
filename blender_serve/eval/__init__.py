"""Evaluation: reference metrics (BLEU, ROUGE, BERTScore; 0-100, higher is better), GPT-Rank of
selection methods from ChatGPT's pairwise verdicts (lower is better), and pairwise agreement of a
ranker with a target metric.

Importing this package loads no heavy library: sacrebleu, rouge_score, torch and transformers
load inside the functions that need them.
"""

from blender_serve.eval.agreement import pairwise_accuracy, pairwise_accuracy_from_matrix
from blender_serve.eval.gpt_rank import gpt_rank_summary, gpt_ranks, model_gpt_ranks, record_gpt_ranks
from blender_serve.eval.metrics import ALL_METRICS, TEXT_METRICS, BertScorer, bleu_scores, rouge_scores, score_texts

__all__ = [
    "TEXT_METRICS", "ALL_METRICS", "bleu_scores", "rouge_scores", "BertScorer", "score_texts",
    "record_gpt_ranks", "gpt_ranks", "gpt_rank_summary", "model_gpt_ranks",
    "pairwise_accuracy", "pairwise_accuracy_from_matrix",
]
