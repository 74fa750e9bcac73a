"""Faster self-attention for DeBERTa-v2/v3 backbones (PairRM's deberta-v3-large), same numbers.

transformers' ``DisentangledSelfAttention`` builds, per layer, the content scores and two gathered
relative-position terms as separate ``[B*h, L, L]`` tensors, scales, adds, masks and softmaxes them:
about eight full-size tensors. Both replacements here keep the relative terms as small per-row tables

    c2p[b, h, q, r] = (q_b,h,q · pos_key_h,r) * s     p2c[b, h, k, r] = (k_b,h,k · pos_query_h,r) * s

(``r`` a relative-position bucket, ``s = 1/sqrt(head_dim * scale_factor)``, ``scale_factor = 1 +
len(pos_att_type)``, exactly DeBERTa's scaling) and add ``c2p[q, idx(q,k)] + p2c[k, idx'(q,k)]`` to
the content score ``(q·k) * s``:

- ``"sdpa"`` gathers the two terms into one additive float bias (the padding mask folded in as the
  dtype's minimum, as transformers masks) and calls ``scaled_dot_product_attention``: two
  ``[B, h, L, L]`` tensors (the bias and one gathered term), and softmax·V in a fused kernel.
- ``"flex"`` reads the tables inside ``flex_attention``'s ``score_mod``, so no ``[B, h, L, L]`` tensor
  exists at all. Its speed needs a GPU: there flex_attention is compiled (once, with dynamic shapes);
  on CPU it runs torch's unfused reference path, which is right but not fast.

``use_fast_attention(model, "sdpa")`` swaps the attention modules of a DeBERTa-v2 model (or of a
PairRankerModel holding one) in place; the new modules hold the same ``nn.Linear`` children, so
parameter names and state dicts do not change. Meant for inference: "flex" refuses attention dropout
(train mode with a dropout > 0); "sdpa" applies it, with a random pattern other than transformers'.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from blender_serve.errors import InvalidInputError

__all__ = ["ATTENTION_IMPLS", "DebertaFastSelfAttention", "use_fast_attention"]

ATTENTION_IMPLS = ("eager", "sdpa", "flex")
_POS_TYPES = ("c2p", "p2c")
_COMPILED_FLEX = None


class DebertaFastSelfAttention(nn.Module):
    """A drop-in for transformers' DeBERTa-v2 ``DisentangledSelfAttention`` (same forward signature,
    returns ``(context [B, L, h*d], probs or None)``), built from an existing one and sharing its weights."""

    def __init__(self, original: nn.Module, impl: str):
        super().__init__()
        _check_impl(impl, ("sdpa", "flex"))
        self.impl = impl
        self.training = original.training
        self.num_attention_heads = original.num_attention_heads
        self.attention_head_size = original.attention_head_size
        self.all_head_size = original.all_head_size
        self.query_proj, self.key_proj, self.value_proj = original.query_proj, original.key_proj, original.value_proj
        self.share_att_key = bool(original.share_att_key)
        self.pos_att_type = tuple(t for t in _POS_TYPES if t in original.pos_att_type)  # fixed order: c2p, p2c
        self.relative_attention = bool(original.relative_attention) and bool(self.pos_att_type)
        self.scale_factor = 1 + len(self.pos_att_type)
        self.dropout = original.dropout
        if original.relative_attention:
            self.pos_dropout = original.pos_dropout
            self.pos_ebd_size = original.pos_ebd_size
            if not self.share_att_key:
                for name in ("pos_key_proj", "pos_query_proj"):
                    if hasattr(original, name):
                        setattr(self, name, getattr(original, name))

    def extra_repr(self) -> str:
        return f"impl={self.impl!r}, heads={self.num_attention_heads}, pos_att_type={list(self.pos_att_type)}"

    # ------------------------------------------------------------------ pieces
    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """[B, L, h*d] -> [B, h, L, d] (a view)."""
        return x.view(x.shape[0], x.shape[1], self.num_attention_heads, -1).transpose(1, 2)

    def _position_tables(self, q: torch.Tensor, k: torch.Tensor, rel_embeddings: torch.Tensor, scale: float):
        """c2p [B, h, L(q), 2S] and p2c_t [B, h, 2S, L(k)] (None when unused); S = the attention span.

        p2c is laid out position-major so that its gather below reads whole rows along k."""
        span = self.pos_ebd_size
        rel = self.pos_dropout(rel_embeddings)[: 2 * span].unsqueeze(0)  # [1, 2S, H]
        c2p = p2c_t = None
        if "c2p" in self.pos_att_type:
            proj = self.key_proj if self.share_att_key else self.pos_key_proj
            pos_key = self._heads(proj(rel)).to(q.dtype)  # [1, h, 2S, d]
            c2p = torch.matmul(q * scale, pos_key.transpose(-1, -2))  # [B, h, L, 2S]
        if "p2c" in self.pos_att_type:
            proj = self.query_proj if self.share_att_key else self.pos_query_proj
            pos_query = self._heads(proj(rel)).to(k.dtype)  # [1, h, 2S, d]
            p2c_t = torch.matmul(pos_query, (k * scale).transpose(-1, -2))  # [B, h, 2S, L(k)]
        return c2p, p2c_t

    def _bias(self, c2p, p2c_t, relative_pos: torch.Tensor, mask: torch.Tensor, shape, dtype) -> torch.Tensor:
        """The additive bias [B, h, L, L] (a view with an 8-aligned row stride, which fused kernels want)."""
        B, h, L, _ = shape
        span = self.pos_ebd_size
        width = -(-L // 8) * 8
        rel = relative_pos[0]  # [L, L]: rel[q, k]
        if c2p is not None:
            c_idx = torch.clamp(rel + span, 0, 2 * span - 1)  # [L(q), L(k)]
            if width > L:
                c_idx = nn.functional.pad(c_idx, (0, width - L))  # columns past L: any index, never read
            bias = torch.gather(c2p, -1, c_idx.expand(B, h, L, width))  # [B, h, L, width]
        else:
            bias = torch.zeros((B, h, L, width), dtype=dtype, device=mask.device)
        bias = bias[..., :L]
        if p2c_t is not None:
            # transformers gathers p2c over key rows at span - rel[k, q], then transposes:
            # term[q, k] = p2c[k, span - rel[k, q]] = p2c_t[span - rel[k, q], k]
            p_idx = torch.clamp(span - rel.transpose(0, 1), 0, 2 * span - 1)  # [L(q), L(k)]
            bias += torch.gather(p2c_t, -2, p_idx.expand(B, h, L, L))
        return bias.masked_fill_(mask == 0, torch.finfo(dtype).min)

    def _score_mod(self, c2p, p2c_t, relative_pos: torch.Tensor, mask: torch.Tensor):
        """flex_attention's score_mod: content score + c2p[q, c_idx[q, k]] + p2c_t[p_idx[q, k], k], padding masked.

        The [L, L] index tables are shared by the whole batch and every head (int32: 4 bytes a pair);
        no per-batch, per-head L x L tensor exists.
        """
        span = self.pos_ebd_size
        rel = relative_pos[0]  # [L, L]
        c_idx = torch.clamp(rel + span, 0, 2 * span - 1).to(torch.int32)  # [L(q), L(k)]
        p_idx = torch.clamp(span - rel.transpose(0, 1), 0, 2 * span - 1).to(torch.int32)  # [L(q), L(k)]

        def score_mod(score, b, h, q_idx, kv_idx):
            if c2p is not None:
                score = score + c2p[b, h, q_idx, c_idx[q_idx, kv_idx]]
            if p2c_t is not None:
                score = score + p2c_t[b, h, p_idx[q_idx, kv_idx], kv_idx]
            # A literal, finite masked score: a fully padded query row then averages over all keys, as
            # transformers' does; a module-level float would be lifted to a tensor under dynamic compile.
            return torch.where(mask[b, 0, q_idx, kv_idx] != 0, score, -1e30)

        return score_mod

    # ------------------------------------------------------------------ forward
    def forward(self, hidden_states, attention_mask, output_attentions=False, query_states=None,
                relative_pos=None, rel_embeddings=None):
        """Same arguments and results as transformers' DisentangledSelfAttention.forward."""
        q = self._heads(self.query_proj(hidden_states if query_states is None else query_states))  # [B, h, L, d]
        k = self._heads(self.key_proj(hidden_states))  # [B, h, L, d]
        v = self._heads(self.value_proj(hidden_states))  # [B, h, L, d]
        B, h, L, d = q.shape
        assert k.shape[2] == L, f"query and key lengths differ ({L} vs {k.shape[2]}); only self-attention is covered"
        scale = 1.0 / math.sqrt(d * self.scale_factor)
        mask = attention_mask if attention_mask.dim() == 4 else attention_mask.unsqueeze(1)  # [B, 1, L, L]
        c2p = p2c_t = None
        if self.relative_attention:
            if relative_pos is None or rel_embeddings is None:
                raise InvalidInputError("DeBERTa fast attention needs the encoder's relative_pos and rel_embeddings")
            if relative_pos.dim() == 2:
                relative_pos = relative_pos.unsqueeze(0)
            if relative_pos.dim() != 3 or relative_pos.shape[0] != 1:
                raise InvalidInputError(f"relative_pos of shape {tuple(relative_pos.shape)} is not covered; "
                                        "fast attention takes the encoder's one [1, L, L] table")
            c2p, p2c_t = self._position_tables(q, k, rel_embeddings, scale)
        dropout_p = self.dropout.p if self.training else 0.0
        if output_attentions:
            context, probs = self._math(q, k, v, c2p, p2c_t, relative_pos, mask, scale)
        elif self.impl == "sdpa":
            if self.relative_attention:
                bias = self._bias(c2p, p2c_t, relative_pos.to(q.device, torch.long), mask, (B, h, L, L), q.dtype)
            else:
                bias = torch.zeros(mask.shape, dtype=q.dtype, device=q.device).masked_fill_(mask == 0, torch.finfo(q.dtype).min)
            context = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout_p, scale=scale)
            probs = None
        else:
            if dropout_p > 0:
                raise InvalidInputError("attention='flex' has no attention dropout; call model.eval() or use 'sdpa'")
            score_mod = self._score_mod(c2p, p2c_t, relative_pos.to(q.device, torch.long), mask)
            context = _flex(q)(q, k, v, score_mod=score_mod, scale=scale)
            probs = None
        context = context.transpose(1, 2).reshape(B, L, h * d)  # [B, L, h*d]
        return (context, probs)

    def _math(self, q, k, v, c2p, p2c_t, relative_pos, mask, scale):
        """Unfused path for output_attentions=True: the probabilities [B, h, L, L] are the output."""
        scores = torch.matmul(q * scale, k.transpose(-1, -2))  # [B, h, L, L]
        if self.relative_attention:
            scores = scores + self._bias(c2p, p2c_t, relative_pos.to(q.device, torch.long), torch.ones_like(mask),
                                         scores.shape, scores.dtype)
        scores = scores.masked_fill(mask == 0, torch.finfo(scores.dtype).min)
        probs = self.dropout(torch.softmax(scores, dim=-1))
        return torch.matmul(probs, v), probs


def _flex(q: torch.Tensor):
    """flex_attention: compiled once (dynamic shapes) on accelerators, torch's reference path on CPU."""
    global _COMPILED_FLEX
    from torch.nn.attention.flex_attention import flex_attention

    if q.device.type == "cpu":
        return flex_attention
    if _COMPILED_FLEX is None:
        _COMPILED_FLEX = torch.compile(flex_attention, dynamic=True)
    return _COMPILED_FLEX


def _check_impl(impl: str, allowed=ATTENTION_IMPLS) -> None:
    if impl not in allowed:
        raise InvalidInputError(f"unknown attention implementation {impl!r}; use one of {', '.join(map(repr, allowed))}")


def _check_config(module: nn.Module, where: str) -> None:
    """Refuse DeBERTa settings this module does not reproduce, rather than compute other numbers."""
    kinds = list(module.pos_att_type or [])
    unknown = [t for t in kinds if t not in _POS_TYPES]
    if unknown:
        raise InvalidInputError(f"{where}: pos_att_type {kinds} is not covered by the fast attention "
                                f"(only 'c2p' and 'p2c'); use attention='eager'")
    if module.relative_attention and not module.share_att_key:
        missing = [n for t, n in (("c2p", "pos_key_proj"), ("p2c", "pos_query_proj")) if t in kinds and not hasattr(module, n)]
        if missing:
            raise InvalidInputError(f"{where}: share_att_key is False but the layer has no {missing}; use attention='eager'")


def use_fast_attention(model: nn.Module, impl: str) -> int:
    """Swap every DeBERTa-v2/v3 self-attention module of ``model`` for the ``impl`` one, in place.

    Args:
        model: a ``DebertaV2Model``, or any module holding one (a PairRankerModel).
        impl: "eager" (transformers' own; nothing is changed), "sdpa" or "flex".

    Returns:
        How many layers now use ``impl`` (0 for "eager").

    Raises:
        InvalidInputError: an unknown ``impl``, a backbone that is not DeBERTa-v2/v3, or a DeBERTa
        setting the fast paths do not reproduce.

    Example:
        >>> use_fast_attention(ranker.model, "sdpa")   # 24 for PairRM
    """
    _check_impl(impl)
    if impl == "eager":
        return 0
    from transformers.models.deberta_v2.modeling_deberta_v2 import DisentangledSelfAttention

    targets = [(parent, name, child) for parent in model.modules() for name, child in parent.named_children()
               if isinstance(child, (DisentangledSelfAttention, DebertaFastSelfAttention))]
    if not targets:
        config = getattr(model, "config", None) or getattr(getattr(model, "pretrained_model", None), "config", None)
        kind = getattr(config, "model_type", None) or type(model).__name__
        raise InvalidInputError(f"attention={impl!r} needs a DeBERTa-v2/v3 backbone, but this model ({kind}) has no "
                                "DeBERTa-v2 attention layers; use attention='eager'")
    for parent, name, child in targets:
        if isinstance(child, DebertaFastSelfAttention):
            child.impl = impl
        else:
            _check_config(child, f"{type(parent).__name__}.{name}")
            setattr(parent, name, DebertaFastSelfAttention(child, impl))
    return len(targets)
