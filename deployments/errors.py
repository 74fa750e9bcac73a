"""One place that turns any failure into an OpenAI-style error body and an HTTP status.

400 bad input (with ``param`` naming a field refused here), 404
unknown model, 422 no answer had the requested ``response_format``, 504 deadline, 429 overloaded
(with Retry-After), 503 not enough candidates / a component unavailable, 500 only for bugs; a
base model's server's own 4xx about what the client sent keeps its status and message.
"""

from __future__ import annotations

import logging
from typing import Optional

from blender_serve.errors import (
    BlenderError,
    CheckpointError,
    ComponentUnavailableError,
    DeadlineExceededError,
    GenerationError,
    InvalidInputError,
    NotEnoughCandidatesError,
    NoValidAnswerError,
    OverloadedError,
    UnknownModelError,
    UnsupportedParameterError,
    UpstreamError,
)

from deployments.protocol import ErrorInfo, ErrorResponse

__all__ = ["error_status", "error_body", "refusal_body", "to_http_error"]

logger = logging.getLogger("blender_serve.http")

_TYPES = {400: "invalid_request_error", 404: "not_found_error", 422: "invalid_output_error", 408: "timeout_error", 429: "rate_limit_error",
          503: "service_unavailable", 504: "timeout_error", 500: "internal_error",
          401: "invalid_request_error", 405: "invalid_request_error", 413: "invalid_request_error",
          415: "invalid_request_error"}


def error_body(status: int, message: str, *, param: Optional[str] = None,
               errors: Optional[dict[str, str]] = None) -> ErrorResponse:
    """The OpenAI-style body for an error of this status."""
    return ErrorResponse(error=ErrorInfo(message=message, type=_TYPES.get(status, "error"), param=param,
                                         code=str(status), errors=errors))


def refusal_body(status: int, message: str, code: str) -> ErrorResponse:
    """The body of a request refused at the door (401 bad key, 413 body too large, 429 over a rate
    limit), with OpenAI's own error code (``invalid_api_key``, ``request_too_large``, ``rate_limit_exceeded``)."""
    return ErrorResponse(error=ErrorInfo(message=message, type=_TYPES.get(status, "error"), code=code))


def _overload_types() -> tuple[type, ...]:
    try:
        from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

        return (BackPressureError, DeploymentUnavailableError)
    except ImportError:  # pragma: no cover - deployments always run with ray
        return ()


#: 4xx a base model's server answers about this server's own set-up (its key, URL or model id), not
#: about what the client sent: the base model is unavailable (503), as for any other failure of it.
_UPSTREAM_SETUP_ERRORS = {401, 403, 404, 405, 407}


def error_status(exc: BaseException) -> int:
    if isinstance(exc, UpstreamError) and 400 <= exc.status < 500 and exc.status not in _UPSTREAM_SETUP_ERRORS:
        return exc.status
    if isinstance(exc, InvalidInputError):
        return 400
    if isinstance(exc, NoValidAnswerError):
        return 422
    if isinstance(exc, UnknownModelError):
        return 404
    if isinstance(exc, DeadlineExceededError):
        return 504
    if isinstance(exc, OverloadedError):
        return 429
    if isinstance(exc, (NotEnoughCandidatesError, GenerationError, CheckpointError, ComponentUnavailableError)):
        return 503
    if isinstance(exc, _overload_types()):
        return 503
    return 500


def to_http_error(exc: BaseException) -> tuple[int, ErrorResponse, dict[str, str]]:
    """(status, body, headers) for an exception raised while serving a request."""
    status = error_status(exc)
    headers: dict[str, str] = {}
    if status in (429, 503):
        headers["Retry-After"] = str(int(max(1, round(getattr(exc, "retry_after_s", 1)))))
    if status == 500:
        logger.exception("unexpected error while serving a request", exc_info=exc)
        message = f"internal error ({type(exc).__name__}); this is a bug, please report it"
    else:
        message = str(exc) if isinstance(exc, BlenderError) else f"{type(exc).__name__}: {exc}"
    errors = exc.errors if isinstance(exc, NotEnoughCandidatesError) else None
    param = exc.param if isinstance(exc, (UnsupportedParameterError, UpstreamError)) else None
    return status, error_body(status, message, param=param, errors=errors), headers
