"""Chat messages: checked once (``normalize_messages``), and turned into what each model reads.

LLM-Blender's data has an instruction and an input; the ranker's source is ``instruction + input``
(no separator) and the fuser lists both. A chat request maps onto that as: instruction = the last
user turn; input = the earlier turns (system prompt included), one ``role: text`` line each, or ''
for a single-turn chat. So a one-question chat ranks exactly like a MixInstruct record whose
input is that question.
"""

from __future__ import annotations

from typing import Any, Sequence

from blender_serve.errors import InvalidInputError, validated
from blender_serve.types import ChatMessage

__all__ = ["normalize_messages", "as_messages", "split_messages", "ranker_source", "chat_as_plain_prompt", "instruction_prompt"]

_MESSAGE_HINT = "each message is {'role': 'system'|'user'|'assistant', 'content': '<text>'}"


def normalize_messages(messages: Any) -> list[ChatMessage]:
    """Check a conversation and return it as a new list of ChatMessage.

    Raises InvalidInputError, naming the offending index, for a non-list, an empty list, an item
    that is neither a ChatMessage nor a dict of one, a conversation without a user turn, or a last
    message with empty content.
    """
    if isinstance(messages, (str, bytes, dict, ChatMessage)) or not isinstance(messages, Sequence):
        raise InvalidInputError(
            f"messages must be a list of chat messages ({_MESSAGE_HINT}), got {type(messages).__name__}"
        )
    if not messages:
        raise InvalidInputError(f"messages is empty: pass at least one user message ({_MESSAGE_HINT})")
    chat: list[ChatMessage] = []
    for i, m in enumerate(messages):
        if isinstance(m, ChatMessage):
            chat.append(m)
        elif isinstance(m, dict):
            chat.append(validated(ChatMessage, m, f"messages[{i}]", hint=_MESSAGE_HINT))
        else:
            raise InvalidInputError(f"messages[{i}] is a {type(m).__name__}; {_MESSAGE_HINT}")
    if not any(m.role == "user" for m in chat):
        raise InvalidInputError("messages has no user turn: add a {'role': 'user', 'content': ...} message")
    if not chat[-1].content.strip():
        raise InvalidInputError(
            f"the last message (messages[{len(chat) - 1}]) has empty content: send the text to answer"
        )
    return chat


def chat_as_plain_prompt(chat: Sequence[ChatMessage]) -> str:
    """A 'role: content' transcript ending in 'assistant:', for tokenizers without a chat template."""
    return "".join(f"{m.role}: {m.content}\n" for m in chat) + "assistant:"


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


def instruction_prompt(instruction: str, input: str) -> str:
    """The user turn a base model sees for an (instruction, input) record: the non-empty parts,
    separated by a blank line (MixInstruct records often hold the whole query in ``input``)."""
    return "\n\n".join(part for part in (instruction, input) if part and part.strip())
