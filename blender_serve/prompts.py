"""How a chat request becomes the (instruction, input) pair that the ranker and the fuser read.

LLM-Blender's data has an instruction and an input; the ranker's source is ``instruction + input``
(no separator) and the fuser lists both. A chat request maps onto that as: instruction = the last
user turn; input = the earlier turns (system prompt included), one ``role: text`` line each, or ''
for a single-turn chat. So a one-question chat ranks exactly like a MixInstruct record whose
input is that question.
"""

from __future__ import annotations

from typing import Sequence

from blender_serve.errors import InvalidInputError
from blender_serve.generators.base import normalize_messages
from blender_serve.types import ChatMessage

__all__ = ["as_messages", "split_messages", "ranker_source"]


def as_messages(prompt: str | Sequence[ChatMessage | dict]) -> list[ChatMessage]:
    """A prompt string becomes one user message; a list of messages is checked and normalised."""
    if isinstance(prompt, str):
        if not prompt.strip():
            raise InvalidInputError("the prompt is empty; pass the question or instruction to answer")
        return [ChatMessage(role="user", content=prompt)]
    return normalize_messages(prompt)


def split_messages(messages: Sequence[ChatMessage]) -> tuple[str, str]:
    """(instruction, input) of a chat: the last user turn, and the turns before it as context."""
    last_user = max((k for k, m in enumerate(messages) if m.role == "user"), default=None)
    if last_user is None:
        raise InvalidInputError("the conversation has no user message; add one with role 'user'")
    context = "\n".join(f"{m.role}: {m.content}" for m in messages[:last_user])
    return messages[last_user].content, context


def ranker_source(instruction: str, input: str) -> str:
    """The ranker's source text: instruction + input, concatenated with no separator (as PairRM was trained)."""
    return instruction + input
