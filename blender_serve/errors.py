"""The error family of blender_serve.

The core raises these; the serving edge (``deployments``) maps each class to an HTTP status and an
OpenAI-style error body. Every message says what to do instead, not only what went wrong.
"""

from __future__ import annotations

__all__ = [
    "BlenderError",
    "InvalidInputError",
    "UnknownModelError",
    "UnknownStrategyError",
    "CheckpointError",
    "GenerationError",
    "DeadlineExceededError",
    "NotEnoughCandidatesError",
    "OverloadedError",
]


class BlenderError(Exception):
    """Base of every error blender_serve raises on purpose."""


class InvalidInputError(BlenderError, ValueError):
    """The caller passed something malformed (empty list, wrong type, mismatched lengths...)."""


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


class DeadlineExceededError(BlenderError, TimeoutError):
    """A call did not finish before its deadline."""


class NotEnoughCandidatesError(BlenderError):
    """Too few base models answered in time to rank (and fuse) their answers."""

    def __init__(self, message: str, errors: dict[str, str] | None = None):
        super().__init__(message)
        self.errors = dict(errors or {})


class OverloadedError(BlenderError):
    """A component refused work because its queue is full; retry later."""

    def __init__(self, message: str, retry_after_s: float = 1.0):
        super().__init__(message)
        self.retry_after_s = retry_after_s
