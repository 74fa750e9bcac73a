"""PromptedFuser: any instruction-tuned causal LM, prompted through its chat template to fuse answers.

Only the chat template's own markup is structure: the messages' contents are tokenized as plain
text, so a user's ``<|im_start|>system ...`` stays text (``blender_serve.tokenize_safe``)."""

from __future__ import annotations

import string
from typing import Optional, Sequence

from blender_serve.errors import InvalidInputError
from blender_serve.fuser.hf import TransformersFuser
from blender_serve.tokenize_safe import encode_chat, encode_plain

__all__ = ["PromptedFuser", "DEFAULT_TEMPLATE", "DEFAULT_CANDIDATE_TEMPLATE"]

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


class PromptedFuser(TransformersFuser):
    """Fusion by prompting any instruction-tuned causal LM (AutoModelForCausalLM) with its chat template.

    The prompt lists the request and the numbered candidates and asks for one better answer
    (``DEFAULT_TEMPLATE``; pass ``template``/``candidate_template``/``system_prompt`` to change it).
    Candidates are cut to ``candidate_max_length`` tokens and the prompt to ``max_length`` tokens,
    cutting candidates first. Decoding is greedy by default. A tokenizer without a chat template
    gets the plain prompt followed by "Answer:".

    Example:
        >>> fuser = PromptedFuser.from_pretrained("Qwen/Qwen2.5-1.5B-Instruct", max_new_tokens=256)
        >>> fuser.fuse("Name a French city.", "", ["Paris", "Lyon is a French city"]).text
    """

    kind = "causal"
    auto_class = "AutoModelForCausalLM"

    def __init__(self, model, tokenizer, *, max_length: int = 1024, candidate_max_length: int = 128,
                 num_beams: int = 1, max_new_tokens: int = 128, template: str = DEFAULT_TEMPLATE,
                 candidate_template: str = DEFAULT_CANDIDATE_TEMPLATE, system_prompt: Optional[str] = None):
        super().__init__(model, tokenizer, max_length=max_length, candidate_max_length=candidate_max_length,
                         num_beams=num_beams, max_new_tokens=max_new_tokens)
        _check_template(template, _TEMPLATE_FIELDS, "candidates")
        _check_template(candidate_template, _CANDIDATE_FIELDS, "text")
        self.template = template
        self.candidate_template = candidate_template
        self.system_prompt = system_prompt

    def format_prompt(self, instruction: str, input: str, candidates: Sequence[str]) -> str:
        """The user message for one request (candidates as given, not cut).

        Example:
            >>> print(fuser.format_prompt("Say hi.", "", ["hi", "hello"]))
        """
        cands = "".join(self.candidate_template.format(number=i + 1, text=c) for i, c in enumerate(candidates))
        query = "\n\n".join(part for part in (instruction, input) if part.strip())
        return self.template.format(query=query, instruction=instruction, input=input,
                                    candidates=cands.rstrip("\n"), num_candidates=len(candidates))

    def _prompt_ids(self, user_message: str) -> list[int]:
        """Token ids of the whole prompt: chat template when the tokenizer has one."""
        if getattr(self.tokenizer, "chat_template", None):
            messages = [{"role": "user", "content": user_message}]
            if self.system_prompt:
                messages.insert(0, {"role": "system", "content": self.system_prompt})
            # The template already wrote any BOS it wants; adding specials would double it.
            return encode_chat(self.tokenizer, messages, protected=self._structural, add_generation_prompt=True)
        system = self.system_prompt + "\n\n" if self.system_prompt else ""
        return encode_plain(self.tokenizer, system + user_message + "\n\nAnswer:\n", add_special_tokens=True,
                            protected=self._structural)

    def render_prompt(self, instruction: str, input: str, candidates: Sequence[str]) -> list[int]:
        """The whole prompt's token ids: the chat template when the tokenizer has one."""
        return self._prompt_ids(self.format_prompt(instruction, input, candidates))
