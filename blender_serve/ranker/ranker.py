"""PairRanker: load a PairRM checkpoint, compare two candidates, rank many.

``compare`` is the primitive; ``rank`` builds on it through a strategy (see ``aggregation``).
Every pair a call needs, across all its sources, is scored in batched forward passes: pairs are
sorted by length, cut into batches of at most ``batch_size`` pairs and ``max_batch_tokens`` padded
tokens, and padded per batch (dynamic padding), under ``torch.inference_mode``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import threading
import warnings
from typing import Optional, Sequence

import numpy as np

from blender_serve.devices import resolve_device, resolve_dtype
from blender_serve.errors import CheckpointError, InvalidInputError
from blender_serve.ranker.aggregation import get_strategy
from blender_serve.ranker.checkpoint import RankerCheckpoint, read_checkpoint
from blender_serve.ranker.layout import write_original_layout
from blender_serve.ranker.encoding import EncodedGroup, PairEncoder
from blender_serve.types import RankResult

__all__ = ["PairRanker", "COMPARE_MODES", "QUANTIZE_MODES", "cpu_batch_tokens", "quantize_int8"]

logger = logging.getLogger(__name__)

# "both": f(a, b) - f(b, a), position bias cancelled (the reference's default "[A,B]+[B,A]");
# "single": f(a, b), one pass; "reversed": -f(b, a).
COMPARE_MODES = ("both", "single", "reversed")

# "none": the checkpoint's weights as loaded; "int8": the backbone's linear layers quantized to int8
# per tensor, activations quantized on the fly (CPU only; ``python -m bench rank_cpu`` prints its cost).
QUANTIZE_MODES = ("none", "int8")


def cpu_batch_tokens(hidden_size: int) -> int:
    """The default ``max_batch_tokens`` on CPU for a backbone ``hidden_size`` wide.

    On CPU a wide padded batch spills the attention tensors out of cache, a narrow one pays per-pass
    overhead; the best cap shrinks as the model widens. Measured here (1 thread, fp32, 8 candidates
    of 20-50 words): hidden 384 x 12 layers was fastest at 512-1024 padded tokens per pass (16384:
    1.9x slower); hidden 64 x 2 layers at 1024-2048 (16 requests at once: 2048 best, 1.11x over
    1024). This is ``1024 * sqrt(384 / hidden)`` as a power of two, within 256..8192.

    Example:
        >>> cpu_batch_tokens(384), cpu_batch_tokens(64), cpu_batch_tokens(1024)
        (1024, 2048, 512)
    """
    raw = 1024 * math.sqrt(384 / max(1, int(hidden_size)))
    return int(min(8192, max(256, 2 ** round(math.log2(raw)))))


def quantize_int8(model):
    """``model`` with its backbone's ``nn.Linear`` layers replaced by dynamically quantized int8 ones
    (weights int8 per tensor; activations quantized per call), in place. CPU only. The head stays
    float: it is tiny and sets the scores' scale."""
    import torch

    with warnings.catch_warnings():  # torch.ao's eager quantization is deprecated in favour of torchao
        warnings.simplefilter("ignore")
        torch.ao.quantization.quantize_dynamic(model.pretrained_model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
    return model


def _check_text(value, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidInputError(f"{what} must be a str, got {type(value).__name__}; pass the text itself")
    return value


def _check_candidates(candidates, what: str = "candidates", minimum: int = 2) -> list[str]:
    if isinstance(candidates, str) or not isinstance(candidates, Sequence):
        raise InvalidInputError(f"{what} must be a list of str, got {type(candidates).__name__}")
    if len(candidates) < minimum:
        raise InvalidInputError(
            f"{what} has {len(candidates)} item(s); ranking needs at least {minimum} "
            "(with one candidate there is nothing to compare: use it directly)"
        )
    for k, c in enumerate(candidates):
        _check_text(c, f"{what}[{k}]")
    return list(candidates)


class PairRanker:
    """A pairwise cross-encoder ranker (PairRM) ready for inference.

    Example:
        >>> ranker = PairRanker.from_pretrained("/models/PairRM", device="cpu")
        >>> ranker.compare("What is 2+2?", "4", "5")   # > 0: the first answer is better
        >>> ranker.rank("What is 2+2?", ["4", "5", "four"]).order   # best first
    """

    def __init__(self, model, tokenizer, *, source_max_length: int, candidate_max_length: int,
                 device: str = "cpu", dtype=None, batch_size: int = 32, seed: int = 0,
                 max_batch_tokens: Optional[int] = None, checkpoint: Optional[RankerCheckpoint] = None,
                 quantize: str = "none"):
        import torch

        self.model = model.eval()
        self.tokenizer = tokenizer
        self.device = device
        self.dtype = dtype or torch.float32
        self.batch_size = int(batch_size)
        # On CPU, attention over a wide padded batch is memory-bound (see cpu_batch_tokens); accelerators want wide batches.
        hidden = getattr(getattr(getattr(model, "pretrained_model", None), "config", None), "hidden_size", 384)
        self.max_batch_tokens = int(max_batch_tokens or (cpu_batch_tokens(hidden) if str(device).startswith("cpu") else 65536))
        self.quantize = quantize
        self.seed = int(seed)
        self.encoder = PairEncoder(tokenizer, source_max_length, candidate_max_length)
        self._checkpoint = checkpoint
        self._lock = threading.Lock()  # one forward at a time per replica; callers may use threads

    # ------------------------------------------------------------------ loading and saving
    @classmethod
    def from_pretrained(cls, path_or_id: str | os.PathLike, *, device: str = "auto", dtype: str = "auto",
                        batch_size: int = 32, source_max_length: Optional[int] = None,
                        candidate_max_length: Optional[int] = None, seed: int = 0,
                        max_batch_tokens: Optional[int] = None, attention: str = "eager",
                        quantize: str = "none") -> "PairRanker":
        """Load a PairRM checkpoint of either layout (original or transformers-style).

        Args:
            path_or_id: a local checkpoint directory, or a hub id (downloaded once).
            device: "auto" (cuda if available), "cpu", "cuda", "cuda:1"...
            dtype: "auto" (float16 on accelerators, float32 on CPU), "float32", "float16", "bfloat16".
            batch_size: most pairs per forward pass.
            max_batch_tokens: most padded tokens per forward pass (default on CPU: ``cpu_batch_tokens`` of
                the backbone's width, 1024 for hidden 384; 65536 on accelerators).
            source_max_length / candidate_max_length: override the checkpoint's token budgets.
            seed: seed of the bubble strategy's shuffle.
            attention: "eager" (transformers' own), or for DeBERTa-v2/v3 backbones "sdpa" or "flex"
                (same scores, fewer L x L tensors; see ``blender_serve.ranker.fast_attention``).
            quantize: "none", or "int8" on CPU in float32: the backbone's linear layers in int8
                (faster; scores move slightly: ``python -m bench rank_cpu`` prints the agreement).
        """
        from blender_serve.ranker.fast_attention import ATTENTION_IMPLS, use_fast_attention

        if attention not in ATTENTION_IMPLS:
            raise InvalidInputError(f"unknown attention {attention!r}; use one of {', '.join(map(repr, ATTENTION_IMPLS))}")
        if quantize not in QUANTIZE_MODES:
            raise InvalidInputError(f"unknown quantize {quantize!r}; use one of {', '.join(map(repr, QUANTIZE_MODES))}")

        ckpt = read_checkpoint(path_or_id)
        device = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, device, half="float16")
        state = ckpt.state_dict
        emb_key = next((k for k in state if k.endswith("word_embeddings.weight") and k.startswith("pretrained_model.")), None)
        if emb_key is None:
            raise CheckpointError(f"{ckpt.directory}: no 'pretrained_model.*word_embeddings.weight' in the weights; "
                                  "is this a PairRanker checkpoint?")
        vocab = state[emb_key].shape[0]
        if vocab != len(ckpt.tokenizer):
            raise CheckpointError(
                f"{ckpt.directory}: the weights have {vocab} token embeddings but the tokenizer has "
                f"{len(ckpt.tokenizer)} tokens (with the 4 ranker prefixes); the tokenizer does not belong to these weights"
            )
        config = ckpt.backbone_config
        config.vocab_size = vocab
        from blender_serve.devices import MODEL_LOAD_LOCK

        with MODEL_LOAD_LOCK:
            from transformers import AutoModel

            backbone = AutoModel.from_config(config)
        from blender_serve.ranker.model import PairRankerModel

        model = PairRankerModel(backbone, n_tasks=ckpt.ranker_config["n_tasks"], drop_out=ckpt.ranker_config["drop_out"])
        result = model.load_state_dict(state, strict=False)
        missing = [k for k in result.missing_keys if not k.endswith("position_ids")]
        if missing:
            raise CheckpointError(f"{ckpt.directory}: weights missing from the checkpoint: {missing[:8]}")
        if result.unexpected_keys:
            logger.warning("ignoring %d unexpected weights in %s: %s", len(result.unexpected_keys),
                           ckpt.directory, result.unexpected_keys[:5])
        use_fast_attention(model, attention)
        model.to(device=device, dtype=torch_dtype)
        if quantize == "int8":
            if not str(device).startswith("cpu") or str(torch_dtype) != "torch.float32":
                raise InvalidInputError(f"quantize='int8' runs on CPU in float32 (got device {device}, dtype {torch_dtype}); "
                                        "on an accelerator use dtype 'float16' or 'bfloat16' instead")
            quantize_int8(model)
        ckpt.state_dict = {}  # don't keep a second copy of the weights alive
        src_max = source_max_length or ckpt.ranker_config["source_maxlength"]
        cand_max = candidate_max_length or ckpt.ranker_config["candidate_maxlength"]
        _check_position_budget(config, src_max, cand_max)
        return cls(model, ckpt.tokenizer, source_max_length=src_max, candidate_max_length=cand_max,
                   device=device, dtype=torch_dtype, batch_size=batch_size, seed=seed,
                   max_batch_tokens=max_batch_tokens, checkpoint=ckpt, quantize=quantize)

    @classmethod
    def from_config(cls, config) -> "PairRanker":
        """Build from a ``blender_serve.config.RankerConfig``."""
        return cls.from_pretrained(config.path, device=config.device, dtype=config.dtype, batch_size=config.batch_size,
                                   source_max_length=config.source_max_length,
                                   candidate_max_length=config.candidate_max_length, seed=config.seed,
                                   max_batch_tokens=config.max_batch_tokens, attention=config.attention,
                                   quantize=config.quantize)

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Save in the original PairRM layout (ranker config.json + model.safetensors), with the
        tokenizer and backbone config beside it so it reloads offline."""
        if self.quantize != "none":
            raise InvalidInputError(f"this ranker was quantized ({self.quantize}) when loaded; save the original "
                                    "checkpoint instead (quantization is applied at load time)")
        ckpt = self._checkpoint
        write_original_layout(directory, self.model.state_dict(), self.model.pretrained_model.config, self.tokenizer,
                              backbone_name=ckpt.backbone_name if ckpt else None,
                              source_maxlength=self.encoder.source_max_length,
                              candidate_maxlength=self.encoder.candidate_max_length, n_tasks=self.model.n_tasks,
                              drop_out=ckpt.ranker_config["drop_out"] if ckpt else 0.05,
                              extra=ckpt.ranker_config.get("original") if ckpt else None)

    # ------------------------------------------------------------------ scoring
    def _score(self, items: list[tuple[list[int], tuple[int, int, int]]]) -> np.ndarray:
        """Logits f for (input ids, prefix positions) pairs: sorted by length, batched, dynamically padded."""
        import torch

        out = np.zeros(len(items), dtype=np.float64)
        if not items:
            return out
        order = sorted(range(len(items)), key=lambda k: len(items[k][0]))
        with self._lock, torch.inference_mode():
            for idx in self._batches(order, [len(items[k][0]) for k in order]):
                width = max(len(items[k][0]) for k in idx)
                ids = torch.full((len(idx), width), self.encoder.pad_id, dtype=torch.long)
                mask = torch.zeros((len(idx), width), dtype=torch.long)
                for row, k in enumerate(idx):
                    seq = items[k][0]
                    ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
                    mask[row, : len(seq)] = 1
                pos = torch.tensor([items[k][1] for k in idx], dtype=torch.long)
                logits = self.model(ids.to(self.device), mask.to(self.device), pos.to(self.device))
                out[idx] = logits.float().cpu().numpy()
        return out

    def _batches(self, order: list[int], lengths: list[int]):
        """Cut length-sorted items into batches of at most batch_size rows and max_batch_tokens padded tokens."""
        batch: list[int] = []
        for k, length in zip(order, lengths):  # lengths ascend, so the newest item sets the padded width
            if batch and (len(batch) >= self.batch_size or (len(batch) + 1) * length > self.max_batch_tokens):
                yield batch
                batch = []
            batch.append(k)
        if batch:
            yield batch

    def _group(self, source: str, candidates: Sequence[str]) -> EncodedGroup:
        return self.encoder.encode_group(source, candidates)

    # ------------------------------------------------------------------ compare
    def compare(self, source: str, candidate_a: str, candidate_b: str, mode: str = "both") -> float:
        """The logit that ``candidate_a`` is a better answer to ``source`` than ``candidate_b`` (> 0: a is better).

        mode "both" (default) returns f(a, b) - f(b, a): two passes, free of position bias, equal to
        the reference's ``compare(..., return_logits=True)`` in its default "[A,B]+[B,A]" mode.
        "single" returns f(a, b) from one pass; "reversed" returns -f(b, a).
        """
        return self.compare_batch([source], [candidate_a], [candidate_b], mode=mode)[0]

    def compare_batch(self, sources: Sequence[str], candidates_a: Sequence[str], candidates_b: Sequence[str],
                      mode: str = "both") -> list[float]:
        """``compare`` for many (source, a, b) triples, in shared batched forward passes."""
        if mode not in COMPARE_MODES:
            raise InvalidInputError(f"unknown compare mode {mode!r}; use one of {COMPARE_MODES}")
        for name, seq in (("sources", sources), ("candidates_a", candidates_a), ("candidates_b", candidates_b)):
            if isinstance(seq, str) or not isinstance(seq, Sequence):
                raise InvalidInputError(f"{name} must be a list of str; for one triple call compare()")
        if not (len(sources) == len(candidates_a) == len(candidates_b)):
            raise InvalidInputError(
                f"sources, candidates_a and candidates_b must have equal lengths, got "
                f"{len(sources)}, {len(candidates_a)}, {len(candidates_b)}"
            )
        items = []
        for k, (s, a, b) in enumerate(zip(sources, candidates_a, candidates_b)):
            group = self._group(_check_text(s, f"sources[{k}]"),
                                [_check_text(a, f"candidates_a[{k}]"), _check_text(b, f"candidates_b[{k}]")])
            if mode in ("both", "single"):
                items.append(self.encoder.pair(group, 0, 1))
            if mode in ("both", "reversed"):
                items.append(self.encoder.pair(group, 1, 0))
        logits = self._score(items)
        if mode == "both":
            return [float(f - r) for f, r in zip(logits[0::2], logits[1::2])]
        if mode == "single":
            return [float(v) for v in logits]
        return [float(-v) for v in logits]

    def pair_logits(self, sources: Sequence[str], candidates: Sequence[Sequence[str]],
                    pairs: Sequence[Sequence[tuple[int, int]]]) -> list[np.ndarray]:
        """Raw logits f(c_i, c_j) of the requested ordered pairs of each source, in shared batched passes.

        ``pairs[k]`` lists (i, j) index pairs into ``candidates[k]``; the result's k-th array holds
        their logits in that order. The evaluation uses it to fill full matrices once and cache them.
        """
        if not (len(sources) == len(candidates) == len(pairs)):
            raise InvalidInputError(f"got {len(sources)} sources, {len(candidates)} candidate lists and "
                                    f"{len(pairs)} pair lists; pass one of each per source")
        items, spans = [], []
        for k, (s, cands, wanted) in enumerate(zip(sources, candidates, pairs)):
            group = self._group(_check_text(s, f"sources[{k}]"), _check_candidates(cands, f"candidates[{k}]", minimum=1))
            start = len(items)
            for i, j in wanted:
                if not (0 <= i < len(cands) and 0 <= j < len(cands)) or i == j:
                    raise InvalidInputError(f"pairs[{k}] holds ({i}, {j}); use two different indices below {len(cands)}")
                items.append(self.encoder.pair(group, i, j))
            spans.append((start, len(items)))
        logits = self._score(items)
        return [logits[a:b].copy() for a, b in spans]

    # ------------------------------------------------------------------ rank
    def rank(self, source: str, candidates: Sequence[str], strategy: str = "max_logits",
             top_k: Optional[int] = None, seed: Optional[int] = None) -> RankResult:
        """Rank ``candidates`` as answers to ``source``.

        Returns a RankResult: ``order`` (indices, best first, cut to ``top_k`` when given),
        ``scores`` (one per candidate, input order, higher is better), and ``matrix`` (pairwise
        logits) for matrix strategies. Strategies: see ``blender_serve.ranker.STRATEGIES``.
        """
        return self.rank_batch([source], [candidates], strategy=strategy, top_k=top_k, seed=seed)[0]

    async def arank(self, source: str, candidates: Sequence[str], strategy: str = "max_logits",
                    top_k: Optional[int] = None) -> RankResult:
        """``rank`` in a worker thread, so an event loop keeps serving while the encoder runs."""
        return await asyncio.to_thread(self.rank, source, candidates, strategy, top_k)

    async def acompare(self, source: str, candidate_a: str, candidate_b: str, mode: str = "both") -> float:
        """``compare`` in a worker thread."""
        return await asyncio.to_thread(self.compare, source, candidate_a, candidate_b, mode)

    def rank_batch(self, sources: Sequence[str], candidates: Sequence[Sequence[str]], strategy: str = "max_logits",
                   top_k: Optional[int] = None, seed: Optional[int] = None) -> list[RankResult]:
        """``rank`` for many sources at once; every round's pairs of every source share forward passes.

        Sources may have different numbers of candidates.
        """
        strat = get_strategy(strategy)
        if isinstance(sources, str) or not isinstance(sources, Sequence):
            raise InvalidInputError("sources must be a list of str; for one source call rank()")
        if isinstance(candidates, str) or not isinstance(candidates, Sequence):
            raise InvalidInputError("candidates must be a list with one list of str per source")
        if len(sources) != len(candidates):
            raise InvalidInputError(f"got {len(sources)} sources but {len(candidates)} candidate lists; pass one list per source")
        if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1):
            raise InvalidInputError(f"top_k must be a positive int or None, got {top_k!r}")
        groups = []
        for k, (s, cands) in enumerate(zip(sources, candidates)):
            cands = _check_candidates(cands, f"candidates[{k}]" if len(sources) > 1 else "candidates")
            groups.append(self._group(_check_text(s, f"sources[{k}]" if len(sources) > 1 else "source"), cands))
        rng = np.random.default_rng(self.seed if seed is None else seed)
        runs = [strat.rounds(len(g.candidate_ids), rng) for g in groups]
        pending = {k: run.send(None) for k, run in enumerate(runs)}  # k -> pairs wanted this round
        rankings: dict[int, object] = {}
        while pending:
            keys = list(pending)
            items, spans = [], []
            for k in keys:
                start = len(items)
                items.extend(self.encoder.pair(groups[k], i, j) for i, j in pending[k])
                spans.append((start, len(items)))
            logits = self._score(items)
            for k, (a, b) in zip(keys, spans):
                try:
                    pending[k] = runs[k].send(logits[a:b])
                except StopIteration as done:
                    rankings[k] = done.value
                    del pending[k]
        results = []
        for k in range(len(groups)):
            r = rankings[k]
            results.append(RankResult(
                order=r.order[:top_k] if top_k else list(r.order),
                scores=[float(x) for x in r.scores],
                strategy=strat.name,
                matrix=None if r.matrix is None else r.matrix.tolist(),
                num_forward_pairs=r.num_pairs,
            ))
        return results


def _check_position_budget(config, source_max: int, cand_max: int) -> None:
    """Encoders with absolute positions cannot read past max_position_embeddings: fail at load, not mid-request."""
    relative = str(getattr(config, "model_type", "")).startswith("deberta") and not getattr(config, "position_biased_input", True)
    limit = getattr(config, "max_position_embeddings", None)
    if relative or not limit:
        return
    if str(getattr(config, "model_type", "")) in ("roberta", "xlm-roberta"):
        limit -= 2  # positions start after the padding index
    worst = source_max + 2 * cand_max
    if worst > limit:
        raise InvalidInputError(
            f"this backbone reads at most {limit} positions but a pair can reach {worst} tokens "
            f"(source {source_max} + 2 x candidate {cand_max}); pass smaller source_max_length/candidate_max_length"
        )
