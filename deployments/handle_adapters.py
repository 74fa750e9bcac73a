"""Deployment handles dressed as the pipeline's components.

Each adapter satisfies one Protocol of ``blender_serve.interfaces`` over a Ray Serve handle, so the
ingress runs the very same ``Blender`` pipeline as the library, with each component in its own
deployment; the single-model pass-through goes through ``HandleGenerator`` as well (and its
``chat_raw``, a whole OpenAI request to a base model's own server). Handles carry
the request id to the component's replica, where it tags the log lines.

Failures leave an adapter typed, as the library's own components raise them: an error the
component raised on purpose (a BlenderError) is unwrapped from Ray's RayTaskError, so its message
carries no remote traceback; anything else (the replica died, its node left, the deployment has
no healthy replica, its queue is full, a bug) becomes ComponentUnavailableError, whose message
names the component and the error type only (the full text goes to the log). Given a
``DeploymentWatch``, an adapter fails at once while Serve reports its deployment down, instead of
waiting in Serve's queue for a replica that may take minutes to come back.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, AsyncIterator, Optional, Sequence, TypeVar, Union

from blender_serve.errors import BlenderError, ComponentUnavailableError
from blender_serve.types import ChatMessage, FusionOutput, Generation, GenerationChunk, RankResult, SamplingParams

__all__ = ["HandleGenerator", "HandleRanker", "HandleFuser", "translated_error"]

logger = logging.getLogger("ray.serve")
T = TypeVar("T")


def translated_error(exc: Exception, component: str) -> Exception:
    """The typed error a caller of ``component`` should see for ``exc`` raised by its handle."""
    from ray.exceptions import RayTaskError
    from ray.serve.exceptions import BackPressureError

    cause = exc.cause if isinstance(exc, RayTaskError) else exc
    if isinstance(cause, BlenderError):
        return cause
    if isinstance(exc, BackPressureError) or isinstance(cause, BackPressureError):
        return ComponentUnavailableError(f"{component} is at capacity (its request queue is full); retry later")
    logger.warning("%s failed: %s: %s", component, type(cause).__name__, cause)
    return ComponentUnavailableError(f"{component} is unavailable ({type(cause).__name__}); retry later")


def _check_up(handle, watch, component: str) -> None:
    """ComponentUnavailableError at once when Serve reports the deployment down (see DeploymentWatch)."""
    if watch is not None and watch.down(handle.deployment_name):
        raise ComponentUnavailableError(f"{component} has no running replica (Serve reports it unhealthy); retry later",
                                        retry_after_s=5.0)


async def _call(response, component: str):
    """Await a DeploymentResponse. When the caller is cancelled (a deadline, a quorum reached, a
    timeout) the replica's call is cancelled too: Serve does that by itself only when the whole
    request is cancelled, and awaiting alone would leave the model generating for nobody."""
    try:
        return await response
    except asyncio.CancelledError:
        response.cancel()
        raise
    except Exception as exc:
        raise translated_error(exc, component) from None


async def _streamed(stream, component: str) -> AsyncIterator[T]:
    """Iterate a DeploymentResponseGenerator; a consumer that leaves or is cancelled cancels it."""
    finished = False
    try:
        async for item in stream:
            yield item
        finished = True
    except Exception as exc:
        finished = True
        raise translated_error(exc, component) from None
    finally:
        if not finished:  # cancelled, or the consumer closed this generator early
            stream.cancel()


class HandleGenerator:
    """A base model served by an ``LLMServer`` deployment (``GeneratorProtocol``)."""

    def __init__(self, name: str, handle, watch=None):
        self._name, self.handle, self.watch = name, handle, watch
        self._stream_handle = handle.options(stream=True)

    @property
    def name(self) -> str:
        return self._name

    async def start(self) -> None:
        """Nothing to do: the deployment loaded its model before it reported ready."""

    async def close(self) -> None:
        """Nothing to release: the deployment owns the model."""

    async def generate(self, messages: Sequence[ChatMessage], params: Optional[SamplingParams] = None) -> Generation:
        _check_up(self.handle, self.watch, f"base model {self._name!r}")
        return await _call(self.handle.generate.remote(list(messages), params), f"base model {self._name!r}")

    async def stream(self, messages: Sequence[ChatMessage],
                     params: Optional[SamplingParams] = None) -> AsyncIterator[GenerationChunk]:
        _check_up(self.handle, self.watch, f"base model {self._name!r}")
        async for chunk in _streamed(self._stream_handle.stream.remote(list(messages), params), f"base model {self._name!r}"):
            yield chunk

    async def chat_raw(self, body: dict[str, Any], stream: bool = False
                       ) -> Union[dict[str, Any], AsyncIterator[dict[str, Any]]]:
        """``Generator.chat_raw`` on the deployment: the server's answer, or (``stream``) its chunks;
        a streamed call's errors come with its first chunk."""
        component = f"base model {self._name!r}"
        _check_up(self.handle, self.watch, component)
        if stream:
            return _streamed(self._stream_handle.chat_raw_stream.remote(body), component)
        return await _call(self.handle.chat_raw.remote(body), component)


class HandleRanker:
    """The PairRanker served by a ``RankerServer`` deployment (``RankerProtocol``)."""

    def __init__(self, handle, watch=None):
        self.handle, self.watch = handle, watch

    async def arank(self, source: str, candidates: Sequence[str], strategy: str = "max_logits",
                    top_k: Optional[int] = None) -> RankResult:
        _check_up(self.handle, self.watch, "the ranker")
        return await _call(self.handle.rank.remote(source, list(candidates), strategy, top_k), "the ranker")

    async def acompare(self, source: str, candidate_a: str, candidate_b: str, mode: str = "both") -> float:
        _check_up(self.handle, self.watch, "the ranker")
        return await _call(self.handle.compare.remote(source, candidate_a, candidate_b, mode), "the ranker")


class HandleFuser:
    """The fuser served by a ``FuserServer`` deployment (``FuserProtocol``)."""

    def __init__(self, handle, watch=None):
        self.handle, self.watch = handle, watch
        self._stream_handle = handle.options(stream=True)

    async def afuse(self, instruction: str, input: str, candidates: Sequence[str],
                    sampling: Optional[SamplingParams] = None, **overrides) -> FusionOutput:
        _check_up(self.handle, self.watch, "the fuser")
        return await _call(self.handle.fuse.remote(instruction, input, list(candidates), sampling, **overrides), "the fuser")

    async def stream(self, instruction: str, input: str, candidates: Sequence[str],
                     sampling: Optional[SamplingParams] = None, **overrides) -> AsyncIterator[GenerationChunk]:
        _check_up(self.handle, self.watch, "the fuser")
        stream = self._stream_handle.stream.remote(instruction, input, list(candidates), sampling, **overrides)
        async for chunk in _streamed(stream, "the fuser"):
            yield chunk
