"""Tokenizing prompts whose user text must stay text: a special token typed by a user never becomes structure.

A prompt is a list of segments, ``(text, is_user)``: the template's own segments may hold special
tokens (``</s>``, ``<extra_id_0>``, ``<|im_start|>``, a ranker's ``<|source|>``), the user's may not.
:func:`encode_segments` encodes the joined text the tokenizer's usual way, then re-encodes as plain
text only the tokens that are *structural* (special, or listed by the caller) and come from a user
segment; every other token is left as it was. So ordinary text gets exactly the ids it always got,
and in a text that spells a special token only that token changes.

"Plain text" means the tokenizer's normalizer, pre-tokenizer and model, with no added-token
matching; a structural piece the model itself still yields (a Unigram vocabulary holds ``[SEP]`` or
``</s>`` as a piece, so ``split_special_tokens=True`` alone is not enough there) is split into
shorter pieces. Nothing is switched on the shared tokenizer (``split_special_tokens`` flips a flag
of the Rust backend that concurrent calls share), so callers on several threads are safe.
Tokenizers without a Rust backend (pure-Python ones) have no offsets: when their usual encoding
shows a structural id that the template segments do not account for, the prompt is encoded segment
by segment instead, the user's with ``split_special_tokens=True``.
"""

from __future__ import annotations

import re
import secrets
from typing import Any, Iterable, Optional, Sequence

__all__ = ["Segment", "structural_ids", "encode_segments", "encode_segments_batch", "encode_plain", "chat_segments",
           "encode_chat"]

#: A piece of a prompt: its text, and whether a user wrote it (True) or the template did (False).
Segment = tuple[str, bool]

_OPEN, _CLOSE = "\ue000", "\ue001"  # private-use characters around a chat content's marker


def structural_ids(tokenizer, extra: Iterable[int] = ()) -> frozenset[int]:
    """Ids that carry structure: the tokenizer's special tokens (its unk excepted: ordinary text
    yields it for unknown characters) and ``extra`` (e.g. a ranker's prefix tokens, which are added
    as ordinary tokens)."""
    ids = set(tokenizer.all_special_ids)
    ids |= {i for i, tok in getattr(tokenizer, "added_tokens_decoder", {}).items() if getattr(tok, "special", False)}
    ids |= set(extra)
    ids.discard(tokenizer.unk_token_id)
    return frozenset(i for i in ids if i is not None)


def encode_plain(tokenizer, text: str, *, add_special_tokens: bool = False,
                 protected: Optional[frozenset[int]] = None) -> list[int]:
    """Ids of ``text`` written by a user: no structural id comes out of it (the post-processor's
    own, with ``add_special_tokens``, excepted). Ordinary text gets ``tokenizer.encode``'s ids.

    Example:
        >>> encode_plain(t5_tokenizer, "a </s> b")  # '</s>' spelled out, never the eos id
    """
    return encode_segments(tokenizer, [(text, True)], add_special_tokens=add_special_tokens, protected=protected)


def encode_segments(tokenizer, segments: Sequence[Segment], *, add_special_tokens: bool = False,
                    max_length: Optional[int] = None, protected: Optional[frozenset[int]] = None) -> list[int]:
    """Ids of the prompt joined from ``segments``; user segments contribute no structural id.

    Args:
        segments: ``(text, is_user)`` pieces, in order.
        add_special_tokens: let the tokenizer's post-processor add its tokens ([CLS]/[SEP], BOS...).
        max_length: cut the text's tokens (never the post-processor's) down to this total, on the
            tokenizer's truncation side, as ``tokenizer(..., truncation=True)`` does.
        protected: the structural ids (default :func:`structural_ids`); pass them when encoding often.

    Returns:
        the ids; for segments whose user text spells no structural token, exactly
        ``tokenizer("".join(texts), add_special_tokens=...)`` truncated to ``max_length``.
    """
    return encode_segments_batch(tokenizer, [segments], add_special_tokens=add_special_tokens,
                                 max_length=max_length, protected=protected)[0]


def encode_segments_batch(tokenizer, prompts: Sequence[Sequence[Segment]], *, add_special_tokens: bool = False,
                          max_length: Optional[int] = None,
                          protected: Optional[frozenset[int]] = None) -> list[list[int]]:
    """:func:`encode_segments` for several prompts, tokenized in one batch call."""
    if not prompts:
        return []
    protected = structural_ids(tokenizer) if protected is None else protected
    texts = ["".join(text for text, _ in segments) for segments in prompts]
    backend = getattr(tokenizer, "backend_tokenizer", None) if getattr(tokenizer, "is_fast", False) else None
    side = getattr(tokenizer, "truncation_side", "right")
    out = []
    if backend is not None:
        # verbose=False: texts are cut after patching, so the too-long warning would be noise.
        encodings = tokenizer(texts, add_special_tokens=add_special_tokens, verbose=False).encodings
        for text, segments, encoding in zip(texts, prompts, encodings):
            ids, seq = _patched(backend, encoding, text, _user_spans(segments), protected, tokenizer.unk_token_id)
            out.append(_truncate(ids, seq, max_length, side))
    else:
        bodies = tokenizer(texts, add_special_tokens=False)["input_ids"]
        for segments, body in zip(prompts, bodies):
            ids, seq = _python_tokenizer_ids(tokenizer, segments, list(body), add_special_tokens, protected)
            out.append(_truncate(ids, seq, max_length, side))
    return out


def chat_segments(tokenizer, messages: Sequence[dict[str, Any]], **template_kwargs) -> list[Segment]:
    """The tokenizer's chat template rendered for ``messages``, as segments: each message's content
    is a user segment, the rest (roles, turn markers) the template's.

    The template is rendered once with every content replaced by a unique marker, and the contents
    are put back where the markers landed. A template that trims contents gets them trimmed; one
    that rewrites them otherwise gets them verbatim (safe, though not what it would have written).
    A template that garbles the markers themselves (slicing contents...) keeps its own rendering,
    with the contents found verbatim in it as the user segments.

    Example:
        >>> chat_segments(tok, [{"role": "user", "content": "hi"}], add_generation_prompt=True)
        [('<|im_start|>user\\n', False), ('hi', True), ('<|im_end|>\\n<|im_start|>assistant\\n', False)]
    """
    rendered = tokenizer.apply_chat_template(list(messages), tokenize=False, **template_kwargs)
    nonce = secrets.randbelow(10**12)  # digits and private-use characters: no case change or trim alters them
    marks: dict[str, str] = {}  # marker -> the content it stands for
    marked = []
    for i, m in enumerate(messages):
        if isinstance(m.get("content"), str):
            mark = f"{_OPEN}{nonce}.{i}{_CLOSE}"
            marks[mark] = m["content"]
            m = {**m, "content": mark}
        marked.append(m)
    if not marks:
        return [(rendered, False)]
    skeleton = tokenizer.apply_chat_template(marked, tokenize=False, **template_kwargs)
    pieces = re.split("(" + "|".join(map(re.escape, marks)) + ")", skeleton)
    if any(_OPEN in p or _CLOSE in p for p in pieces if p not in marks):
        return _located(rendered, list(marks.values()))

    def fill(shape) -> list[Segment]:
        return [(shape(marks[p]), True) if p in marks else (p, False) for p in pieces]

    for shape in (str, str.strip):
        segments = fill(shape)
        if "".join(text for text, _ in segments) == rendered:
            break
    else:  # the template rewrites contents beyond trimming: keep them verbatim
        segments = fill(str)
    return [(text, user) for text, user in segments if text]


def encode_chat(tokenizer, messages: Sequence[dict[str, Any]], *, protected: Optional[frozenset[int]] = None,
                **template_kwargs) -> list[int]:
    """Ids of ``messages`` through the tokenizer's chat template, each content as plain text; no
    specials added beyond the template's own (it writes any BOS it wants). Ordinary contents give
    ``apply_chat_template(..., tokenize=True)``'s ids.

    Example:
        >>> encode_chat(tok, [{"role": "user", "content": "<|im_start|>system"}], add_generation_prompt=True)
    """
    return encode_segments(tokenizer, chat_segments(tokenizer, messages, **template_kwargs), protected=protected)


# -- helpers -------------------------------------------------------------------------------------


def _located(rendered: str, contents: list[str]) -> list[Segment]:
    """``rendered`` cut into segments at each content found verbatim in it, in order."""
    segments: list[Segment] = []
    pos = 0
    for content in contents:
        at = rendered.find(content, pos) if content else -1
        if at < 0:
            continue
        segments += [(rendered[pos:at], False), (content, True)]
        pos = at + len(content)
    segments.append((rendered[pos:], False))
    return [(text, user) for text, user in segments if text]


def _user_spans(segments: Sequence[Segment]) -> list[tuple[int, int]]:
    spans, pos = [], 0
    for text, user in segments:
        if user and text:
            spans.append((pos, pos + len(text)))
        pos += len(text)
    return spans


def _in_user_text(offsets: tuple[int, int], spans: list[tuple[int, int]]) -> bool:
    a, b = offsets
    return b > a and any(a < hi and b > lo for lo, hi in spans)


def _patched(backend, encoding, text: str, spans, protected, unk_id) -> tuple[list[int], list[Optional[int]]]:
    """(ids, sequence ids) of one encoding, its structural tokens inside user spans re-encoded as
    plain text; a sequence id is None for a token the post-processor added."""
    ids, seq = encoding.ids, encoding.sequence_ids
    hits = [k for k, i in enumerate(ids) if i in protected and seq[k] is not None]
    offsets = encoding.offsets if hits else []
    bad = [k for k in hits if _in_user_text(offsets[k], spans)]
    if not bad:
        return ids, seq
    out_ids: list[int] = []
    out_seq: list[Optional[int]] = []
    start = 0
    for k in bad:
        plain = _plain_ids(backend, text[offsets[k][0]:offsets[k][1]], protected, unk_id)
        out_ids += ids[start:k] + plain
        out_seq += seq[start:k] + [seq[k]] * len(plain)
        start = k + 1
    return out_ids + ids[start:], out_seq + seq[start:]


def _plain_ids(backend, text: str, protected, unk_id) -> list[int]:
    """``text`` through the normalizer, pre-tokenizer and model only: no added token is matched."""
    if backend.normalizer is not None:
        text = backend.normalizer.normalize_str(text)
    words = [w for w, _ in backend.pre_tokenizer.pre_tokenize_str(text)] if backend.pre_tokenizer is not None else [text]
    return [i for w in words if w for i in _model_ids(backend.model, w, protected, unk_id)]


def _model_ids(model, piece: str, protected, unk_id) -> list[int]:
    ids = []
    for tok in model.tokenize(piece):
        if tok.id not in protected:
            ids.append(tok.id)
        elif len(tok.value) > 1:  # the vocabulary itself holds the special piece: spell it in two parts
            ids += _model_ids(model, tok.value[:1], protected, unk_id) + _model_ids(model, tok.value[1:], protected, unk_id)
        elif unk_id is not None and unk_id not in protected:
            ids.append(unk_id)
    return ids


def _python_tokenizer_ids(tokenizer, segments, body: list[int], add_special_tokens: bool,
                          protected) -> tuple[list[int], list[Optional[int]]]:
    """The pure-Python tokenizer path: keep the usual ids unless user text added a structural id."""
    template = [i for text, user in segments if text and not user
                for i in tokenizer.encode(text, add_special_tokens=False) if i in protected]
    if [i for i in body if i in protected] != template:
        unk = tokenizer.unk_token_id
        body = []
        for text, user in segments:
            if not user:
                body += tokenizer.encode(text, add_special_tokens=False)
                continue
            for i in tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True):
                if i not in protected:
                    body.append(i)
                elif unk is not None and unk not in protected:
                    body.append(unk)
    if not add_special_tokens:
        return body, [0] * len(body)
    mask = tokenizer.get_special_tokens_mask(body, already_has_special_tokens=False)
    return tokenizer.build_inputs_with_special_tokens(body), [None if m else 0 for m in mask]


def _truncate(ids: list[int], seq: list[Optional[int]], max_length: Optional[int], side: str) -> list[int]:
    """Drop text tokens (never the post-processor's) from ``side`` until ``max_length`` remain."""
    excess = len(ids) - max_length if max_length is not None else 0
    if excess <= 0:
        return list(ids)
    text = [p for p, s in enumerate(seq) if s is not None]
    cut = text[:excess] if side == "left" else text[len(text) - excess:]
    if cut and cut[-1] - cut[0] == len(cut) - 1:  # one run (the usual case): slice it out
        return ids[:cut[0]] + ids[cut[-1] + 1:]
    drop = set(cut)
    return [i for p, i in enumerate(ids) if p not in drop]
