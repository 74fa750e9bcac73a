"""Plain data that crosses module boundaries: messages, sampling settings, generations and results.

Everything here is a pydantic model so that the serving layer can send it over Ray and JSON as is.
Results are frozen; numbers are plain Python floats/ints (no numpy or torch types).
"""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from blender_serve.ordering import ranks_from_scores

__all__ = [
    "ChatMessage",
    "JSONSchemaFormat",
    "ResponseFormat",
    "SamplingParams",
    "Usage",
    "Generation",
    "RankResult",
    "Candidate",
    "BlendResult",
    "Provenance",
    "Progress",
    "FusionOutput",
    "GenerationChunk",
    "TopLogprob",
    "TokenLogprob",
]

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class ChatMessage(BaseModel):
    """One chat turn, as OpenAI clients send it."""

    model_config = _FROZEN
    role: Literal["system", "user", "assistant"] = Field(description="Who wrote this turn.")
    content: str = Field(description="The text of the turn.")


class JSONSchemaFormat(BaseModel):
    """The ``json_schema`` part of OpenAI's ``response_format``: a named JSON Schema."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_by_name=True, validate_by_alias=True,
                              serialize_by_alias=True)
    name: str = Field(description="The schema's name (OpenAI: a-z, A-Z, 0-9, '_' and '-', at most 64).",
                      pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: Optional[str] = Field(None, description="What the answer is for; shown to the models.")
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema", description="The JSON Schema every answer must validate against.")
    strict: Optional[bool] = Field(None, description="Accepted; answers are validated against the schema either way.")


class ResponseFormat(BaseModel):
    """The shape an answer must have (OpenAI's ``response_format``): free text, one JSON object, or
    JSON valid against a schema. ``blender_serve.structured`` asks for it and checks it."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    type: Literal["text", "json_object", "json_schema"] = Field(description="'text', 'json_object' or 'json_schema'.")
    json_schema: Optional[JSONSchemaFormat] = Field(None, description="The schema, for type 'json_schema'.")

    @model_validator(mode="after")
    def _schema_iff_json_schema(self) -> "ResponseFormat":
        if (self.type == "json_schema") != (self.json_schema is not None):
            raise ValueError("send json_schema={'name': ..., 'schema': {...}} with type 'json_schema', and only then")
        return self


class SamplingParams(BaseModel):
    """How a base model samples. ``None`` fields fall back to the generator's own defaults."""

    model_config = ConfigDict(extra="forbid")
    max_tokens: Optional[int] = Field(None, ge=1, description="Most new tokens to generate.")
    temperature: Optional[float] = Field(None, ge=0.0, le=5.0, description="0 means greedy.")
    top_p: Optional[float] = Field(None, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    top_k: Optional[int] = Field(None, ge=0, description="Top-k sampling; 0 or None disables.")
    seed: Optional[int] = Field(None, description="Seed for reproducible sampling, where supported.")
    stop: list[str] = Field(default_factory=list, description="Strings that end generation.")
    response_format: Optional[ResponseFormat] = Field(
        None, description="The shape of the answer (JSON mode, a JSON schema): the models are asked for it (natively "
        "where the backend can enforce it) and the ensemble keeps only answers that have it.")
    logprobs: Optional[int] = Field(
        None, ge=0, le=20, description="One base model only: every generated token's log-probability under the "
        "model, with this many most likely alternatives (0: the chosen token's alone). Backends that compute "
        "them have Generator.token_logprobs; an ensemble's answer has none.")

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_as_list(cls, v):
        if v is None:
            return []
        return [v] if isinstance(v, str) else v

    def merged_over(self, defaults: "SamplingParams") -> "SamplingParams":
        """These settings, with unset fields taken from ``defaults``."""
        data = defaults.model_dump()
        data.update({k: v for k, v in self.model_dump(exclude_unset=True).items() if v is not None})
        return SamplingParams(**data)


class Usage(BaseModel):
    """Token counts of one or more model calls."""

    model_config = ConfigDict(extra="forbid")
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
        )


class Generation(BaseModel):
    """What one base model returned for one request."""

    model_config = _FROZEN
    model: str = Field(description="Name of the generator that produced it.")
    text: str
    usage: Usage = Field(default_factory=Usage)
    finish_reason: Optional[str] = Field(None, description="'stop', 'length' or None if unknown.")
    latency_s: float = Field(0.0, description="Wall time of the call.")
    time_to_first_token_s: Optional[float] = None
    logprobs: Optional[list[TokenLogprob]] = Field(None, description="When asked (SamplingParams.logprobs): every "
                                                   "generated token's, as on GenerationChunk.")


class FusionOutput(BaseModel):
    """What a fuser returned."""

    model_config = _FROZEN
    text: str
    usage: Usage = Field(default_factory=Usage)
    latency_s: float = 0.0
    finish_reason: Optional[str] = Field(None, description="'stop' or 'length' (the token budget ran out); None if unknown.")


class RankResult(BaseModel):
    """The ranking of one source's candidates.

    ``order`` lists candidate indices best first; ``scores[i]`` belongs to candidate ``i`` in input
    order (higher is better); ``matrix[i][j]`` is the pairwise logit f(c_i, c_j) when the strategy
    computed one (None for bubble, which only finds a top-1).
    """

    model_config = _FROZEN
    order: list[int]
    scores: list[float]
    strategy: str
    matrix: Optional[list[list[float]]] = None
    num_forward_pairs: int = Field(0, description="Pairs the ranker's encoder scored.")

    @property
    def best(self) -> int:
        return self.order[0]

    @property
    def ranks(self) -> list[int]:
        """1-based rank of each candidate in input order (1 = best; equal scores share a rank).

        Defined from ``scores``, so it stays whole when ``order`` was cut to a top-k.
        """
        return ranks_from_scores(self.scores)

    def top_k(self, k: Optional[int]) -> list[int]:
        return list(self.order if k is None else self.order[:k])

    def margin(self) -> float:
        """Score gap between the best and the second-best candidate (inf with one candidate)."""
        if len(self.order) < 2:
            return float("inf")
        return self.scores[self.order[0]] - self.scores[self.order[1]]


class Candidate(BaseModel):
    """One base model's answer inside a blend, with its place in the ranking."""

    model_config = _FROZEN
    model: str
    text: str
    score: float
    rank: int = Field(description="1 = ranked best.")
    chosen: bool = Field(description="Whether it was among the top-K passed to the fuser.")
    usage: Usage = Field(default_factory=Usage)
    finish_reason: Optional[str] = Field(None, description="'stop', 'length' or None if unknown.")
    latency_s: float = 0.0
    time_to_first_token_s: Optional[float] = Field(None, description="Seconds from the call to the model's first "
                                                   "piece of text, where the backend reports it (None if unknown).")


class Provenance(BaseModel):
    """How the ensemble reached an answer: every candidate with its score and rank, what was fused,
    what was dropped and why, and the time of each stage. The ``blender`` object of API responses."""

    model_config = _FROZEN
    fused: bool = Field(description="Whether the fuser wrote the answer.")
    fusion_skipped_reason: Optional[str] = Field(None, description="Why the fuser's answer was not used, if it was not.")
    candidates: list[Candidate] = Field(description="Every answer that came back, in rank order.")
    chosen: list[str] = Field(description="Models whose answers were passed to the fuser.")
    strategy: str = Field(description="The ranking strategy used.")
    errors: dict[str, str] = Field(default_factory=dict, description="Model (or 'ranker', 'fuser') -> why it was dropped.")
    skipped: list[str] = Field(default_factory=list, description="Models not waited for: the quorum had answered "
                               "and the grace ran out, so their calls were cancelled (not failures).")
    degraded: list[Literal["unranked", "unfused"]] = Field(
        default_factory=list, description="How the answer fell short of the method: 'unranked' (the ranker failed; "
        "the first model's answer, scores all 0) or 'unfused' (the fuser failed; the top-ranked answer).")
    timings: dict[str, float] = Field(default_factory=dict, description="Stage -> seconds.")
    matrix: Optional[list[list[float]]] = Field(None, description="The ranker's pairwise logits in the order of "
                                                "`candidates`: matrix[i][j] > 0 means candidates[i] beat candidates[j]; "
                                                "None when the strategy computed none (bubble) or one model answered.")


class Progress(BaseModel):
    """What the ensemble knows once it has ranked, before any of the answer: every candidate with its
    score and rank, the pairwise matrix, what was dropped, and whether the fuser will write the
    answer (from which models) or why not. A stream sends it before its first piece when asked
    (``BlendStream.events``; over HTTP ``stream_options.include_provenance``). The final Provenance
    completes it: the fuser may still fail or write an answer of the wrong format and give way."""

    model_config = _FROZEN
    stage: Literal["ranked"] = Field("ranked", description="The stage reached: every candidate ranked, the answer next.")
    will_fuse: bool = Field(description="Whether the fuser is about to write the answer.")
    fusion_skipped_reason: Optional[str] = Field(None, description="Why the fuser will not run, when it will not.")
    candidates: list[Candidate] = Field(description="Every answer that came back, in rank order; 'chosen' marks "
                                        "those the fuser will read.")
    chosen: list[str] = Field(description="Models whose answers the fuser will read (empty when it will not run).")
    strategy: str = Field(description="The ranking strategy used.")
    errors: dict[str, str] = Field(default_factory=dict, description="Model (or 'ranker') -> why it was dropped.")
    skipped: list[str] = Field(default_factory=list, description="Models not waited for (see Provenance.skipped).")
    degraded: list[Literal["unranked", "unfused"]] = Field(default_factory=list, description="'unranked' when the "
                                                           "ranker failed (see Provenance.degraded).")
    timings: dict[str, float] = Field(default_factory=dict, description="Stage -> seconds, so far (generate_s, rank_s).")
    matrix: Optional[list[list[float]]] = Field(None, description="As Provenance.matrix.")


class BlendResult(Provenance):
    """The answer of the ensemble to one request, with provenance."""

    text: str = Field(description="The final answer: fused text, or the top candidate's.")
    finish_reason: str = Field("stop", description="'stop', or 'length' when the answer's token budget ran out.")
    usage: Usage = Field(default_factory=Usage, description="Summed over every model call, the fuser's included.")

    def provenance(self) -> Provenance:
        """Everything but the answer itself (text, finish reason, usage)."""
        return Provenance.model_validate(self.model_dump(include=set(Provenance.model_fields)))


class TopLogprob(BaseModel):
    """A token and its log-probability under the model (OpenAI's ``top_logprobs[]`` entry)."""

    model_config = _FROZEN
    token: str = Field(description="The token's text (undecodable bytes replaced).")
    logprob: float
    bytes: list[int] = Field(description="The token's UTF-8 bytes (a token may hold part of a character).")


class TokenLogprob(TopLogprob):
    """One generated token: its log-probability and the most likely alternatives at its place
    (OpenAI's ``choices[].logprobs.content[]`` entry)."""

    top_logprobs: list[TopLogprob] = Field(default_factory=list)


class GenerationChunk(BaseModel):
    """One piece of a streamed generation. The last chunk carries finish_reason and usage."""

    model_config = _FROZEN
    text: str = ""
    finish_reason: Optional[str] = None
    usage: Optional[Usage] = None
    logprobs: Optional[list[TokenLogprob]] = Field(
        None, description="When asked (SamplingParams.logprobs): the tokens generated since the previous chunk. "
        "Their texts join to the generated text, which a stop sequence may have cut shorter.")
