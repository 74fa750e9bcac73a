"""The error family of blender_serve.

The core raises these; the serving edge (``deployments``) maps each class to an HTTP status and an
OpenAI-style error body. Every message says what to do instead, not only what went wrong.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, TypeVar

__all__ = [
    "BlenderError",
    "InvalidInputError",
    "UnsupportedParameterError",
    "UnknownModelError",
    "UnknownStrategyError",
    "CheckpointError",
    "GenerationError",
    "UpstreamError",
    "DeadlineExceededError",
    "NotEnoughCandidatesError",
    "NoValidAnswerError",
    "OverloadedError",
    "ComponentUnavailableError",
    "validation_message",
    "validated",
]


class BlenderError(Exception):
    """Base of every error blender_serve raises on purpose."""


class InvalidInputError(BlenderError, ValueError):
    """The caller passed something malformed (empty list, wrong type, mismatched lengths...)."""


class UnsupportedParameterError(InvalidInputError):
    """A request field that this server understands but cannot honour for this target (``tools`` on
    an ensemble, say); ``param`` names the field, and the message says what to send instead."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


class UnknownModelError(BlenderError, KeyError):
    """A model, backend or ensemble name that is not configured."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class UnknownStrategyError(InvalidInputError):
    """A ranking strategy name that is not in the registry."""


class CheckpointError(BlenderError):
    """A checkpoint directory that cannot be read as the expected layout."""


class GenerationError(BlenderError):
    """A base model or fuser failed while generating."""


class UpstreamError(GenerationError):
    """A base model's own server (the ``openai`` backend's) answered an HTTP error: ``status`` is
    its status code, ``param`` the field its error body names, if any. The serving edge answers a
    client's mistake (most 4xx) with the same status, anything else as the base model's failure."""

    def __init__(self, message: str, status: int = 502, param: str | None = None):
        super().__init__(message)
        self.status = status
        self.param = param


class DeadlineExceededError(BlenderError, TimeoutError):
    """A call did not finish before its deadline."""


class NotEnoughCandidatesError(BlenderError):
    """Too few base models answered in time to rank (and fuse) their answers."""

    def __init__(self, message: str, errors: dict[str, str] | None = None):
        super().__init__(message)
        self.errors = dict(errors or {})


class NoValidAnswerError(NotEnoughCandidatesError):
    """The base models answered, but no answer had the shape the request asked for (its
    ``response_format``: JSON, or JSON valid against a schema); ``errors`` says why each was dropped."""


class OverloadedError(BlenderError):
    """A component refused work because its queue is full; retry later."""

    def __init__(self, message: str, retry_after_s: float = 1.0):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ComponentUnavailableError(BlenderError):
    """A component (a base model, the ranker or the fuser) could not be reached or died mid-call:
    its replica crashed, its node left, or it has no healthy replica yet. Retry later."""

    def __init__(self, message: str, retry_after_s: float = 1.0):
        super().__init__(message)
        self.retry_after_s = retry_after_s


M = TypeVar("M")


def validation_message(errors: Iterable[Mapping[str, Any]]) -> str:
    """One line for a list of pydantic-style errors (``ValidationError.errors()``, or FastAPI's
    ``RequestValidationError.errors()``): ``"field.sub: problem; other: problem"``."""
    parts = []
    for err in errors:
        loc = ".".join(str(p) for p in err.get("loc", ())) or "value"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid value"


def validated(model: type[M], value: Any, what: str, hint: str = "") -> M:
    """``model.model_validate(value)``, turning a pydantic ValidationError into an InvalidInputError
    with the one message format every part of blender_serve uses: ``"<what> is invalid: <fields>"``.

    Example:
        >>> validated(SamplingParams, {"top_p": 3}, "sampling params")  # raises InvalidInputError
    """
    from pydantic import ValidationError

    if isinstance(value, model):
        return value
    try:
        return model.model_validate(value)  # type: ignore[attr-defined]
    except ValidationError as exc:
        message = f"{what} is invalid: {validation_message(exc.errors())}"
        raise InvalidInputError(message + (f"; {hint}" if hint else "")) from None
