"""Conversions between MixInstruct records and two simpler shapes, and a file converter.

- *plain*: ``{"id"?, "instruction", "input", "output"?, "candidates": [{"model", "text"}]}``,
  a MixInstruct record without scores or verdicts (what a user's own data usually looks like);
- *pairs*: preference pairs ``{"prompt", "chosen", "rejected"}`` (the shape of DPO/reward-model
  data sets), derived from a record by a signal (see :mod:`blender_serve.data.preferences`).

Every reader here streams, except :func:`from_preference_pairs`, which must see all pairs of a
prompt before it can build the prompt's record and so holds the grouped pairs in memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import combinations
from typing import Any, Iterable, Iterator, Optional, Union

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from blender_serve.data.io import PathLike, ReadStats, iter_objects, iter_records, write_objects, write_records
from blender_serve.data.preferences import candidate_scores, parse_signal
from blender_serve.data.records import MixRecord
from blender_serve.errors import InvalidInputError, validation_message

__all__ = ["FORMATS", "convert_file", "from_plain", "from_preference_pairs", "to_plain", "to_preference_pairs"]

FORMATS = ("mixinstruct", "plain", "pairs")
_PLAIN_KEYS = ("id", "instruction", "input", "output", "candidates")


class _Pair(BaseModel):
    """One preference pair as read from a file; other keys are allowed and ignored."""

    model_config = ConfigDict(extra="allow")
    prompt: str
    chosen: str
    rejected: str
    id: Optional[Union[str, int]] = None

    @model_validator(mode="after")
    def _two_texts(self) -> "_Pair":
        if self.chosen == self.rejected:
            raise ValueError("'chosen' and 'rejected' are the same text")
        return self


def _plain_record(item: Any, index: int) -> MixRecord:
    """A plain item as a MixRecord (keys other than the plain ones ignored); raises ValidationError."""
    if not isinstance(item, Mapping):
        raise ValueError(f"expected an object, found {type(item).__name__}")
    data = {key: item[key] for key in _PLAIN_KEYS if key in item}
    if data.get("id") is None:
        data["id"] = f"plain/{index}"
    if isinstance(data.get("candidates"), list):
        data["candidates"] = [{k: c[k] for k in ("model", "text") if k in c} if isinstance(c, Mapping) else c
                              for c in data["candidates"]]
    return MixRecord.model_validate(data)


def _pair(item: Any, index: int) -> _Pair:
    return _Pair.model_validate(item)


def _checked(build, item: Any, index: int, what: str):
    try:
        return build(item, index)
    except ValidationError as exc:
        raise InvalidInputError(f"{what} {index} is invalid: {validation_message(exc.errors())}") from None
    except ValueError as exc:
        raise InvalidInputError(f"{what} {index} is invalid: {exc}") from None


def from_plain(items: Iterable[Mapping[str, Any]]) -> Iterator[MixRecord]:
    """MixRecords from plain items; an item without an id gets ``"plain/<index>"`` (index from 0).

    Raises InvalidInputError naming the item's index and field when one is malformed.
    Example:
        >>> [r.id for r in from_plain([{"instruction": "Hi", "candidates": [{"model": "m", "text": "Hello"}]}])]
        ['plain/0']
    """
    for index, item in enumerate(items):
        yield _checked(_plain_record, item, index, "plain item")


def to_plain(record: MixRecord) -> dict[str, Any]:
    """The record as a plain item (the inverse of :func:`from_plain`): no scores, verdicts or extra keys.

    Example: ``to_plain(r) == {"id": "x", "instruction": "", "input": "Hi", "candidates": [{"model": "m", "text": "Hello"}]}``
    """
    plain: dict[str, Any] = {"id": record.id, "instruction": record.instruction, "input": record.input}
    if record.output is not None:
        plain["output"] = record.output
    plain["candidates"] = [{"model": c.model, "text": c.text} for c in record.candidates]
    return plain


def to_preference_pairs(records: Iterable[MixRecord], signal: str) -> Iterator[dict[str, Any]]:
    """Preference pairs from records: every candidate pair whose signal values differ, the better chosen.

    Pairs follow candidate order (i < j); records lacking the signal for some candidate are
    skipped, and so are pairs of two identical texts. The signal is checked before any record is read.
    Example:
        >>> next(to_preference_pairs(records, "rougeL"))
        {'prompt': ..., 'chosen': ..., 'rejected': ..., 'id': ..., 'chosen_model': ..., 'rejected_model': ...}
    """
    parse_signal(signal)
    return _pairs_of(records, signal)


def _pairs_of(records: Iterable[MixRecord], signal: str) -> Iterator[dict[str, Any]]:
    for record in records:
        scores = candidate_scores(record, signal)
        if scores is None:
            continue
        for i, j in combinations(range(len(scores)), 2):
            if scores[i] == scores[j] or record.candidates[i].text == record.candidates[j].text:
                continue
            good, bad = (i, j) if scores[i] > scores[j] else (j, i)
            yield {"prompt": record.source, "chosen": record.candidates[good].text,
                   "rejected": record.candidates[bad].text, "id": record.id,
                   "chosen_model": record.candidates[good].model, "rejected_model": record.candidates[bad].model}


def from_preference_pairs(pairs: Iterable[Union[Mapping[str, Any], _Pair]]) -> Iterator[MixRecord]:
    """One MixRecord per distinct prompt (first-seen order), with its pairs as ``cmp_results``.

    Each distinct text of a prompt becomes a candidate ``cand0``, ``cand1``... (first-seen order) and
    each pair the verdict ``"candX,candY": "A is better"`` with X the chosen text. A record takes
    the id of its first pair that has one, else ``"pairs/<n>"`` (n counts prompts from 0);
    ``instruction`` is the prompt and ``input`` is empty. Holds all pairs in memory.
    Example:
        >>> r = next(from_preference_pairs([{"prompt": "Q", "chosen": "good", "rejected": "bad"}]))
        >>> r.models, r.cmp_results
        (['cand0', 'cand1'], {'cand0,cand1': 'A is better'})
    """
    groups: dict[str, dict[str, Any]] = {}
    for index, item in enumerate(pairs):
        pair = item if isinstance(item, _Pair) else _checked(_pair, item, index, "preference pair")
        group = groups.setdefault(pair.prompt, {"id": None, "texts": {}, "cmp": {}})
        if group["id"] is None and pair.id is not None:
            group["id"] = str(pair.id)
        names = [group["texts"].setdefault(text, f"cand{len(group['texts'])}") for text in (pair.chosen, pair.rejected)]
        group["cmp"][f"{names[0]},{names[1]}"] = "A is better"
    for n, (prompt, group) in enumerate(groups.items()):
        candidates = [{"model": name, "text": text} for text, name in group["texts"].items()]
        yield MixRecord(id=group["id"] or f"pairs/{n}", instruction=prompt, input="",
                        candidates=candidates, cmp_results=group["cmp"])


def _read(src: PathLike, src_format: str, skip_bad: bool, stats: Optional[ReadStats]) -> Iterator[MixRecord]:
    if src_format == "mixinstruct":
        return iter_records(src, skip_bad=skip_bad, stats=stats)
    if src_format == "plain":
        return iter_objects(src, _plain_record, skip_bad=skip_bad, stats=stats)
    return from_preference_pairs(iter_objects(src, _pair, skip_bad=skip_bad, stats=stats))


def convert_file(src: PathLike, dst: PathLike, *, src_format: str, dst_format: str, signal: Optional[str] = None,
                 skip_bad: bool = False, stats: Optional[ReadStats] = None) -> int:
    """Convert a data file between ``mixinstruct``, ``plain`` and ``pairs``; returns the count written.

    Both files are JSON arrays or JSON lines (``dst``'s suffix decides: ``.json``, ``.jsonl``,
    maybe + ``.gz``). ``signal`` is required for, and only for, ``dst_format="pairs"``.
    ``skip_bad`` and ``stats`` as in :func:`blender_serve.data.io.iter_objects`.
    Example:
        >>> convert_file("test.json", "pairs.jsonl", src_format="mixinstruct", dst_format="pairs", signal="cmp_results")
    """
    for name, value in (("src_format", src_format), ("dst_format", dst_format)):
        if value not in FORMATS:
            raise InvalidInputError(f"unknown {name} {value!r}; use one of {list(FORMATS)}")
    if (dst_format == "pairs") != (signal is not None):
        raise InvalidInputError("a signal is needed to write pairs, and only then (e.g. signal='cmp_results')")
    if signal is not None:
        parse_signal(signal)
    records = _read(src, src_format, skip_bad, stats)
    if dst_format == "mixinstruct":
        return write_records(dst, records)
    if dst_format == "plain":
        return write_objects(dst, (to_plain(r) for r in records))
    return write_objects(dst, to_preference_pairs(records, signal))
