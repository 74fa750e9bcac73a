"""The fusion prompt of the chat-model fusers, rendered in one place.

One user message lists the request and the numbered candidates and asks for one better answer; an
optional system message goes before it. ``PromptedFuser`` tokenizes these messages with its own
model's chat template; ``GeneratorFuser`` sends them to a base model of the ensemble, whose backend
applies that model's chat template. Pure string work: no tokenizer, no model.
"""

from __future__ import annotations

import string
from typing import Optional, Sequence

from blender_serve.errors import InvalidInputError

__all__ = ["FusionPrompt", "DEFAULT_TEMPLATE", "DEFAULT_CANDIDATE_TEMPLATE"]

#: The user message. Fields: {query} (instruction and input, blank ones left out), {instruction},
#: {input}, {candidates} (every candidate rendered with the candidate template), {num_candidates}.
DEFAULT_TEMPLATE = (
    "Several assistants answered the same request. Write one answer that is better than each of "
    "theirs: keep what is correct and useful, fix mistakes, fill gaps and drop repetition. Reply "
    "with the answer only, without mentioning the assistants.\n\n"
    "# Request\n{query}\n\n"
    "# {num_candidates} candidate answers\n{candidates}"
)
#: One candidate inside {candidates}. Fields: {number} (from 1), {text}.
DEFAULT_CANDIDATE_TEMPLATE = "## Answer {number}\n{text}\n\n"

_TEMPLATE_FIELDS = {"query", "instruction", "input", "candidates", "num_candidates"}
_CANDIDATE_FIELDS = {"number", "text"}


def _check_template(template: str, allowed: set[str], required: str) -> None:
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as e:
        raise InvalidInputError(f"malformed template ({e}); write fields as {{name}} and literal braces as {{{{ }}}}") from e
    if not fields <= allowed or required not in fields:
        raise InvalidInputError(f"template fields {sorted(fields)} must include {{{required}}} and come from {sorted(allowed)}")


class FusionPrompt:
    """The messages that ask a chat model to fuse candidates (templates checked on construction).

    Example:
        >>> FusionPrompt(system_prompt="Be brief.").messages("Say hi.", "", ["hi", "hello"])[0]
        {'role': 'system', 'content': 'Be brief.'}
    """

    def __init__(self, template: str = DEFAULT_TEMPLATE, candidate_template: str = DEFAULT_CANDIDATE_TEMPLATE,
                 system_prompt: Optional[str] = None):
        _check_template(template, _TEMPLATE_FIELDS, "candidates")
        _check_template(candidate_template, _CANDIDATE_FIELDS, "text")
        self.template = template
        self.candidate_template = candidate_template
        self.system_prompt = system_prompt

    def user_message(self, instruction: str, input: str, candidates: Sequence[str]) -> str:
        """The user message for one request (texts used as given)."""
        cands = "".join(self.candidate_template.format(number=i + 1, text=c) for i, c in enumerate(candidates))
        query = "\n\n".join(part for part in (instruction, input) if part.strip())
        return self.template.format(query=query, instruction=instruction, input=input,
                                    candidates=cands.rstrip("\n"), num_candidates=len(candidates))

    def messages(self, instruction: str, input: str, candidates: Sequence[str]) -> list[dict[str, str]]:
        """The chat: the system message (when there is one), then the user message."""
        system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return system + [{"role": "user", "content": self.user_message(instruction, input, candidates)}]
