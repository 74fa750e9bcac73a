"""Structured answers (OpenAI's ``response_format``): asking the models for JSON, checking what came back.

The pipeline asks every base model for JSON by one system instruction (``instructed``; backends
that can enforce JSON natively also get the ``response_format`` in their sampling settings), drops
the answers that are not JSON, or not valid against the schema, before ranking (``keep_valid``),
and checks the fused answer the same way (``check_answer``). An answer wrapped in a markdown code
fence, or with prose around one JSON object, counts as its JSON: the text kept is the JSON alone.
``jsonschema`` is imported only when a schema is checked.
"""

from __future__ import annotations

import json
import re
from typing import Any, Optional, Sequence

from blender_serve.errors import InvalidInputError, NoValidAnswerError
from blender_serve.types import ChatMessage, Generation, ResponseFormat, SamplingParams

__all__ = ["requested", "check_format", "format_instruction", "instructed", "check_answer", "keep_valid"]

_FENCE = re.compile(r"```[a-zA-Z0-9_-]*\s*\n?(.*?)```", re.DOTALL)


def requested(sampling: Optional[SamplingParams]) -> Optional[ResponseFormat]:
    """The structured format ``sampling`` asks for; None for free text."""
    fmt = sampling.response_format if sampling is not None else None
    return fmt if fmt is not None and fmt.type != "text" else None


def _validator(fmt: ResponseFormat):
    import jsonschema

    schema = fmt.json_schema.schema_
    cls = jsonschema.validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except jsonschema.exceptions.SchemaError as exc:
        raise InvalidInputError(f"response_format.json_schema.schema is not a valid JSON Schema: {exc.message}") from None
    return cls(schema)


def check_format(fmt: Optional[ResponseFormat]) -> None:
    """InvalidInputError (400) when the schema of ``fmt`` is not a valid JSON Schema."""
    if fmt is not None and fmt.type == "json_schema":
        _validator(fmt)


def format_instruction(fmt: ResponseFormat) -> str:
    """The instruction that asks a model for answers of this format."""
    text = "Answer with one JSON object and nothing else: no text before or after it, no code fences."
    if fmt.type == "json_schema":
        spec = fmt.json_schema
        about = f" ({spec.description})" if spec.description else ""
        text += (f" The object is a {spec.name!r}{about} and must validate against this JSON Schema: "
                 f"{json.dumps(spec.schema_, separators=(',', ':'))}")
    return text


def instructed(messages: Sequence[ChatMessage], fmt: Optional[ResponseFormat]) -> list[ChatMessage]:
    """``messages`` with the format's instruction added to the system prompt (one is added first
    when there is none); unchanged for free text."""
    messages = list(messages)
    if fmt is None or fmt.type == "text":
        return messages
    instruction = format_instruction(fmt)
    if messages and messages[0].role == "system":
        return [ChatMessage(role="system", content=f"{messages[0].content}\n\n{instruction}")] + messages[1:]
    return [ChatMessage(role="system", content=instruction)] + messages


def _json_object(text: str) -> tuple[Optional[str], Any]:
    """(the JSON text, its value) of the first reading of ``text`` that is one JSON object:
    the whole text, a fenced block, or the span from the first '{' to the last '}'."""
    stripped = text.strip()
    readings = [stripped] + [m.strip() for m in _FENCE.findall(stripped)]
    first, last = stripped.find("{"), stripped.rfind("}")
    if 0 <= first < last:
        readings.append(stripped[first:last + 1])
    for reading in readings:
        try:
            value = json.loads(reading)
        except ValueError:
            continue
        if isinstance(value, dict):
            return reading, value
    return None, None


def check_answer(text: str, fmt: ResponseFormat, validator=None) -> tuple[Optional[str], Optional[str]]:
    """(the answer's JSON text, None) when ``text`` has the format, else (None, why it has not).

    Example:
        >>> check_answer('```json\\n{"a": 1}\\n```', ResponseFormat(type="json_object"))
        ('{"a": 1}', None)
    """
    if fmt.type == "text":
        return text, None
    found, value = _json_object(text)
    if found is None:
        return None, "is not a JSON object"
    if fmt.type == "json_schema":
        import jsonschema

        error = jsonschema.exceptions.best_match((validator or _validator(fmt)).iter_errors(value))
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path)
            return None, f"does not match the JSON schema: {error.message}" + (f" (at /{where})" if where else "")
    return found, None


def keep_valid(generations: Sequence[Generation], fmt: ResponseFormat, errors: dict[str, str]) -> list[Generation]:
    """The generations whose answers have the format, each cut to its JSON; every other one is
    reported in ``errors`` (model -> why). NoValidAnswerError when none is left."""
    validator = _validator(fmt) if fmt.type == "json_schema" else None
    kept = []
    for g in generations:
        found, why = check_answer(g.text, fmt, validator)
        if why is None:
            kept.append(g if found == g.text else g.model_copy(update={"text": found}))
        else:
            errors[g.model] = f"dropped: the answer {why} (response_format {fmt.type})"
    if not kept:
        raise NoValidAnswerError(
            f"none of the {len(generations)} answers matched response_format {fmt.type}: {errors}. Retry, "
            f"simplify the schema, or select models that follow JSON instructions", errors)
    return kept
