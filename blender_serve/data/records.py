"""One MixInstruct record and its candidates, as pydantic models (SPEC "MixInstruct").

A record is ``{"id", "instruction", "input", "output", "candidates": [{"model", "text",
"decoding_method", "scores"}], "cmp_results"}``. Both models keep unknown keys (``extra="allow"``)
so that reading and writing a file back loses nothing that other tools put there (``verifiers``...).

Reading is lenient where real files are untidy and strict where a mistake would skew results:

- an integer ``id`` becomes a string; a ``null`` score is dropped (the candidate simply lacks
  that score); a boolean or non-numeric score is an error;
- ``cmp_results`` may be a dict or a JSON string holding one; keys are ``"modelA,modelB"`` and every
  verdict must be one of :data:`VERDICTS`;
- two candidates of one record may not share a model name.

:meth:`MixRecord.to_dict` writes the SPEC's shape back: ``id``, ``instruction``, ``input`` and
``candidates`` always, every other key only when the record had it (read from a file, passed to
the constructor, or assigned later).
"""

from __future__ import annotations

import json
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator

from blender_serve.errors import UnknownModelError

__all__ = ["VERDICTS", "Verdict", "MixCandidate", "MixRecord"]

Verdict = Literal["A is better", "B is better", "Same good", "Same bad"]
VERDICTS: tuple[str, ...] = ("A is better", "B is better", "Same good", "Same bad")


class MixCandidate(BaseModel):
    """One base model's answer to a record's input, with its automatic metric scores."""

    model_config = ConfigDict(extra="allow")
    model: str = Field(description="Name of the base model that wrote the text.")
    text: str = Field(description="The candidate answer.")
    decoding_method: Optional[str] = Field(None, description="e.g. 'top_p_sampling'.")
    scores: dict[str, float] = Field(
        default_factory=dict,
        description="Metric name -> value, higher is better (rougeL, bleu, bertscore, logprobs...).",
    )

    @field_validator("scores", mode="before")
    @classmethod
    def _drop_null_scores(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        for key, score in value.items():
            if isinstance(score, bool):
                raise ValueError(f"score {key!r} is a boolean, expected a number")
        return {key: score for key, score in value.items() if score is not None}


class MixRecord(BaseModel):
    """One MixInstruct example: an input, its reference output, N candidates and their judgments.

    Example:
        >>> r = MixRecord(id=7, instruction="Translate: ", input="bonjour",
        ...               candidates=[{"model": "a", "text": "hello"}, {"model": "b", "text": "hi"}],
        ...               cmp_results='{"a,b": "A is better"}')
        >>> r.id, r.source, r.models, r.cmp_results
        ('7', 'Translate: bonjour', ['a', 'b'], {'a,b': 'A is better'})
    """

    model_config = ConfigDict(extra="allow")
    id: str = Field(description="Unique id, e.g. 'unified_chip2/69962'; integers become strings.")
    instruction: str = Field("", description="The task; may be empty when the input says it all.")
    input: str = Field("", description="The task's input text.")
    output: Optional[str] = Field(None, description="The reference answer, if any.")
    candidates: list[MixCandidate] = Field(default_factory=list, description="The base models' answers.")
    cmp_results: Optional[dict[str, Verdict]] = Field(
        None, description="'modelA,modelB' -> ChatGPT's verdict (one of VERDICTS); test split only."
    )

    @field_validator("id", mode="before")
    @classmethod
    def _id_as_str(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return value

    @field_validator("candidates")
    @classmethod
    def _unique_models(cls, value: list[MixCandidate]) -> list[MixCandidate]:
        seen: set[str] = set()
        dupes = [c.model for c in value if c.model in seen or seen.add(c.model)]
        if dupes:
            raise ValueError(f"duplicate candidate model names {sorted(set(dupes))}; each model may answer once")
        return value

    @field_validator("cmp_results", mode="before")
    @classmethod
    def _parse_cmp_json(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(f"a string that is not valid JSON ({exc.msg}); expected a dict or its JSON") from None
        return value

    @field_validator("cmp_results")
    @classmethod
    def _pair_keys(cls, value: Optional[dict[str, str]]) -> Optional[dict[str, str]]:
        for key in value or {}:
            a, comma, b = key.partition(",")
            if not comma or not a or not b or "," in b:
                raise ValueError(f"key {key!r} is not 'modelA,modelB'")
        return value

    @property
    def source(self) -> str:
        """What the ranker reads: instruction + input, with no separator (SPEC "PairRanker")."""
        return self.instruction + self.input

    @property
    def models(self) -> list[str]:
        """The candidates' model names, in candidate order."""
        return [c.model for c in self.candidates]

    def candidate(self, model: str) -> MixCandidate:
        """The candidate written by ``model``; raises :class:`UnknownModelError` (a KeyError) if none.

        Example: ``record.candidate("vicuna-13b-1.1").text``
        """
        for cand in self.candidates:
            if cand.model == model:
                return cand
        raise UnknownModelError(f"record {self.id!r} has no candidate from {model!r}; it has {self.models}")

    def to_dict(self) -> dict[str, Any]:
        """The record as a JSON-ready dict in the SPEC's shape (``cmp_results`` as a dict).

        Keys the record was not given stay absent, so reading then writing a MixInstruct record
        changes nothing but a ``cmp_results`` string, which becomes a dict.
        Example: ``json.dumps(record.to_dict(), ensure_ascii=False)``
        """
        data = self.model_dump(exclude_unset=True)  # unknown keys included
        data.update(id=self.id, instruction=self.instruction, input=self.input)
        data["candidates"] = [c.model_dump(exclude_unset=True) for c in self.candidates]
        declared = {key: data.pop(key) for key in type(self).model_fields if key in data}
        return {**declared, **data}
