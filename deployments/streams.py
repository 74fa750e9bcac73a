"""Server-sent events of streamed answers, from one kind of event stream.

``deployments.serving`` turns an answer (one base model's, or the ensemble's) into events: text
pieces, a ``Progress`` (the ranked candidates, when the client asked), then one ``StreamEnd``. Here
they become the frames each API streams: chat completion chunks (``chat_sse``), text completion
chunks (``completion_sse``) and the Responses API's typed events (``response_sse``); a base model's
server's own chunks are relayed by ``relayed_sse``. Every stream is run up to its first event before
it is returned (``started``), so that a failure before any text still gets its own status code; a
failure after that is reported in-band, as OpenAI does.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import time
from typing import Any, AsyncIterator, Callable, Optional, Union

from pydantic import BaseModel

from blender_serve.types import Progress, Provenance, TokenLogprob, Usage
from deployments.access import charge_tokens
from deployments.errors import to_http_error
from deployments.protocol import (
    ChatCompletionChunk, ChoiceLogprobs, ChunkChoice, CompletionChunk, CompletionChunkChoice, DeltaMessage, UsageInfo, new_id,
)
from deployments.responses_api import OutputMessage, OutputText, ResponseObject, ResponseUsage

__all__ = ["SSE_DONE", "sse_frame", "StreamEnd", "Piece", "Event", "started", "charged_pieces", "relayed_sse", "total_tokens",
           "chat_sse", "completion_sse", "response_sse", "response_object", "ranked_choices"]

SSE_DONE = "data: [DONE]\n\n"


def sse_frame(event: BaseModel) -> str:
    """One server-sent event carrying a pydantic model as JSON."""
    return f"data: {event.model_dump_json()}\n\n"


@dataclasses.dataclass(frozen=True)
class StreamEnd:
    """The end of a streamed answer: how it finished, what it cost, and (ensemble) its provenance."""

    finish_reason: str
    usage: Optional[Usage]
    provenance: Optional[Provenance] = None


class Piece(str):
    """A text piece with the log-probabilities of the tokens it came with (one base model, when
    asked); everywhere else it is the text. Its text may be empty when only tokens came."""

    logprobs: list[TokenLogprob]

    def __new__(cls, text: str, logprobs: list[TokenLogprob]) -> "Piece":
        piece = super().__new__(cls, text)
        piece.logprobs = logprobs
        return piece


#: What a streamed answer is made of: text pieces, a Progress (when asked), then one StreamEnd.
Event = Union[str, Piece, Progress, StreamEnd]


async def started(stream: AsyncIterator) -> AsyncIterator:
    """``stream`` run up to its first item here, then the same items from the start: a failure
    before anything was produced (bad input, an unknown model, too few candidates) is raised to
    the caller, who can still answer with a status code instead of a half-open stream."""
    iterator = stream.__aiter__()
    try:
        first = await iterator.__anext__()
    except StopAsyncIteration:
        return iterator

    async def replay() -> AsyncIterator:
        yield first
        async for item in iterator:
            yield item

    return replay()


async def charged_pieces(chunks: AsyncIterator) -> AsyncIterator[str]:
    """The text of streamed fuser chunks; the usage on the last one is charged to the caller's key."""
    async for chunk in chunks:
        if chunk.text:
            yield chunk.text
        if chunk.usage is not None:
            charge_tokens(chunk.usage.total_tokens)


async def relayed_sse(rid: str, model: str, chunks: AsyncIterator[dict[str, Any]], include_usage: bool
                      ) -> AsyncIterator[str]:
    """The SSE frames of a base model's server's streamed answer: its chunks with our id and model
    name (usage only when the client asked: we always ask, to charge it), then ``[DONE]``; a
    failure mid-stream is reported in-band, as on ``chat_sse``."""
    usage = None
    try:
        async for chunk in chunks:
            usage = chunk.get("usage") or usage
            if not include_usage:
                if chunk.get("usage") and not chunk.get("choices"):
                    continue
                chunk = {k: v for k, v in chunk.items() if k != "usage"}
            yield f"data: {json.dumps({**chunk, 'id': rid, 'model': model})}\n\n"
    except Exception as exc:  # the status is sent already: report in-band
        yield sse_frame(to_http_error(exc)[1])
    charge_tokens(total_tokens(usage))
    yield SSE_DONE


def total_tokens(usage: Optional[dict[str, Any]]) -> int:
    total = (usage or {}).get("total_tokens")
    return total if isinstance(total, int) else 0


async def chat_sse(rid: str, model: str, events: AsyncIterator[Event], include_usage: bool, n: int = 1
                   ) -> AsyncIterator[str]:
    """A streamed chat completion, ending with ``[DONE]``: the role, a Progress as a chunk with no
    choices (when asked), the text deltas, the finish reason with the provenance, with ``n`` > 1
    the further choices (``ranked_choices``) each as one delta and its finish, the usage (when asked)."""
    created = int(time.time())

    def chunk(**fields) -> ChatCompletionChunk:
        return ChatCompletionChunk(id=rid, model=model, created=created, **fields)

    def piece(i: int, text: str) -> ChatCompletionChunk:
        logprobs = ChoiceLogprobs(content=text.logprobs) if isinstance(text, Piece) else None
        return chunk(choices=[ChunkChoice(index=i, delta=DeltaMessage(content=str(text)), logprobs=logprobs)])

    return await _chunked_sse(
        events, include_usage, n,
        opening=lambda i: chunk(choices=[ChunkChoice(index=i, delta=DeltaMessage(role="assistant", content=""))]),
        piece=piece,
        end=lambda i, finish, provenance: chunk(choices=[ChunkChoice(index=i, finish_reason=finish)], blender=provenance),
        bare=lambda **fields: chunk(choices=[], **fields))


async def completion_sse(rid: str, model: str, events: AsyncIterator[Event], include_usage: bool, n: int = 1
                         ) -> AsyncIterator[str]:
    """A streamed text completion (``/v1/completions``), ending with ``[DONE]``: the text pieces,
    then a chunk with no text that carries the finish reason and the provenance; ``n`` and the
    optional chunks with no choices (the Progress, the usage) as on chat."""
    created = int(time.time())

    def chunk(**fields) -> CompletionChunk:
        return CompletionChunk(id=rid, model=model, created=created, **fields)

    return await _chunked_sse(
        events, include_usage, n, opening=None,
        piece=lambda i, text: chunk(choices=[CompletionChunkChoice(index=i, text=str(text))]),
        end=lambda i, finish, provenance: chunk(choices=[CompletionChunkChoice(index=i, text="", finish_reason=finish)],
                                                blender=provenance),
        bare=lambda **fields: chunk(choices=[], **fields))


async def _chunked_sse(events: AsyncIterator[Event], include_usage: bool, n: int,
                       opening: Optional[Callable[[int], BaseModel]], piece: Callable[[int, str], BaseModel],
                       end: Callable[[int, str, Optional[Provenance]], BaseModel],
                       bare: Callable[..., BaseModel]) -> AsyncIterator[str]:
    """The frames of chat and text completion streams, which differ only in their chunks' shape:
    ``opening`` starts a choice, ``piece`` carries its text, ``end`` its finish, ``bare`` (no
    choices) the Progress or the usage."""
    events = await started(events)

    async def frames() -> AsyncIterator[str]:
        if opening is not None:
            yield sse_frame(opening(0))
        pieces: list[str] = []
        try:
            async for event in events:
                if isinstance(event, StreamEnd):
                    charge_tokens(event.usage.total_tokens if event.usage is not None else 0)
                    yield sse_frame(end(0, event.finish_reason, event.provenance))
                    further = ranked_choices("".join(pieces), event.finish_reason, event.provenance, n)[1:]
                    for i, (text, finish) in enumerate(further, start=1):
                        if opening is not None:
                            yield sse_frame(opening(i))
                        yield sse_frame(piece(i, text))
                        yield sse_frame(end(i, finish, None))
                    if include_usage and event.usage is not None:
                        yield sse_frame(bare(usage=UsageInfo.of(event.usage)))
                elif isinstance(event, Progress):
                    yield sse_frame(bare(blender=event))
                else:
                    pieces.append(event)
                    yield sse_frame(piece(0, event))
        except Exception as exc:  # the status is sent already: report in-band
            yield sse_frame(to_http_error(exc)[1])
        yield SSE_DONE

    return frames()


def ranked_choices(text: str, finish: str, provenance: Optional[Provenance], n: int) -> list[tuple[str, str]]:
    """(text, finish reason) of up to ``n`` choices: the answer, then the next-ranked candidates
    whose text differs from every choice before them."""
    choices = [(text, finish)]
    for c in provenance.candidates if provenance is not None and n > 1 else []:
        if len(choices) >= n:
            break
        if all(c.text != t for t, _ in choices):
            choices.append((c.text, c.finish_reason or "stop"))
    return choices


async def response_sse(base: dict[str, Any], events: AsyncIterator[Event]) -> AsyncIterator[str]:
    """The SSE events of a streamed Responses API answer, as the official clients read them:
    response.created, .in_progress, .output_item.added, .content_part.added, (when asked)
    response.blender.progress with the Progress, .output_text.delta (one per piece),
    .output_text.done, .content_part.done, .output_item.done, then .completed (or .incomplete
    at the token limit; .failed after a failure mid-stream)."""
    events = await started(events)
    msg_id = new_id("msg")
    where = {"item_id": msg_id, "output_index": 0, "content_index": 0}

    async def frames() -> AsyncIterator[str]:
        seq = itertools.count()

        def frame(kind: str, **data) -> str:
            return f"event: {kind}\ndata: {json.dumps({'type': kind, 'sequence_number': next(seq), **data})}\n\n"

        opening = ResponseObject(**base, status="in_progress").model_dump(mode="json")
        yield frame("response.created", response=opening)
        yield frame("response.in_progress", response=opening)
        yield frame("response.output_item.added", output_index=0,
                    item=OutputMessage(id=msg_id, status="in_progress").model_dump(mode="json"))
        yield frame("response.content_part.added", **where, part=OutputText(text="").model_dump(mode="json"))
        pieces, end = [], StreamEnd("stop", None)
        try:
            async for event in events:
                if isinstance(event, StreamEnd):
                    end = event
                    charge_tokens(event.usage.total_tokens if event.usage is not None else 0)
                elif isinstance(event, Progress):
                    yield frame("response.blender.progress", blender=event.model_dump(mode="json"))
                else:
                    pieces.append(event)
                    yield frame("response.output_text.delta", **where, delta=event, logprobs=[])
        except Exception as exc:  # the status is sent already: report in-band
            error = to_http_error(exc)[1].error
            failed = ResponseObject(**base, status="failed", error={"code": error.code, "message": error.message})
            yield frame("response.failed", response=failed.model_dump(mode="json"))
            return
        text = "".join(pieces)
        done = response_object(base, text, end.finish_reason, end.usage or Usage(), end.provenance, msg_id)
        yield frame("response.output_text.done", **where, text=text, logprobs=[])
        yield frame("response.content_part.done", **where, part=OutputText(text=text).model_dump(mode="json"))
        yield frame("response.output_item.done", output_index=0, item=done.output[0].model_dump(mode="json"))
        yield frame("response.completed" if done.status == "completed" else "response.incomplete",
                    response=done.model_dump(mode="json"))

    return frames()


def response_object(base: dict[str, Any], text: str, finish: str, usage: Usage, provenance: Optional[Provenance],
                    msg_id: Optional[str] = None) -> ResponseObject:
    """A finished Responses API answer: 'incomplete' when the token budget ran out."""
    status = "incomplete" if finish == "length" else "completed"
    message = OutputMessage(id=msg_id or new_id("msg"), status=status, content=[OutputText(text=text)])
    return ResponseObject(**base, status=status, output=[message], usage=ResponseUsage.of(usage), blender=provenance,
                          incomplete_details={"reason": "max_output_tokens"} if status == "incomplete" else None)
