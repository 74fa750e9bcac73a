"""PromptedFuser: any instruction-tuned causal LM, prompted through its chat template to fuse answers."""

from __future__ import annotations

import string
from typing import TYPE_CHECKING, Optional, Sequence

from blender_serve.errors import InvalidInputError
from blender_serve.fuser._fit import cut_text, fit_lengths
from blender_serve.fuser.hf import TransformersFuser, load_pretrained

if TYPE_CHECKING:
    from blender_serve.config import FuserConfig

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
# As in GenFuser: candidates shrink to this before the request itself loses tokens.
_SOFT_FLOOR = 32


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

    @classmethod
    def from_pretrained(cls, path_or_id: str, device: str = "auto", dtype: str = "auto",
                        device_map: Optional[str] = None, **options) -> "PromptedFuser":
        """Load a causal LM and its tokenizer (chat template included) as a fuser.

        Args:
            path_or_id: local directory or hub id of an instruction-tuned causal LM.
            device: 'auto' (cuda, else mps, else cpu), 'cpu', 'cuda:1'...; ignored with device_map.
            dtype: 'auto' (bfloat16 on an accelerator, float32 on cpu) or an explicit dtype name.
            device_map: accelerate device map (e.g. 'auto') to spread a large model.
            **options: max_length, candidate_max_length, num_beams, max_new_tokens, template,
                candidate_template, system_prompt.

        Returns:
            a ready PromptedFuser.

        Example:
            >>> PromptedFuser.from_pretrained("/models/qwen2.5-7b-instruct", device_map="auto")
        """
        from transformers import AutoModelForCausalLM

        model, tokenizer = load_pretrained(AutoModelForCausalLM, path_or_id, device, dtype, device_map)
        return cls(model, tokenizer, **options)

    @classmethod
    def _from_config(cls, config: "FuserConfig") -> "PromptedFuser":
        # FuserConfig's num_beams default (4) is gen_fuser's; a chat LM stays greedy unless told.
        beams = {"num_beams": config.num_beams} if "num_beams" in config.model_fields_set else {}
        return cls.from_pretrained(
            config.path, device=config.device, dtype=config.dtype, device_map=config.device_map,
            max_length=config.max_length, candidate_max_length=config.candidate_max_length,
            max_new_tokens=config.max_new_tokens, **beams,
        )

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
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            # The template already wrote any BOS it wants; adding specials would double it.
            return self.tokenizer.encode(text, add_special_tokens=False)
        system = self.system_prompt + "\n\n" if self.system_prompt else ""
        return self.tokenizer.encode(system + user_message + "\n\nAnswer:\n")

    def build_input_ids(self, instruction: str, input: str, candidates: Sequence[str]) -> list[int]:
        """The prompt's token ids for one request, at most ``max_length`` tokens.

        Candidates are cut to ``candidate_max_length`` tokens ('...' appended); if the prompt is
        still too long, candidates are cut further (longest first), then the instruction and input.

        Example:
            >>> ids = fuser.build_input_ids("Say hi.", "", ["hi", "hello"])
        """
        self._check(instruction, input, candidates)
        texts = [instruction, input, *candidates]
        ids = [self.tokenizer.encode(t, add_special_tokens=False) for t in texts]
        lengths = [len(ids[0]), len(ids[1])] + [min(len(c), self.candidate_max_length) for c in ids[2:]]

        def render(lens: list[int]) -> list[int]:
            cut = [cut_text(self.tokenizer, t, i, n) for t, i, n in zip(texts, ids, lens)]
            return self._prompt_ids(self.format_prompt(cut[0], cut[1], cut[2:]))

        n = len(texts)
        stages = [(list(range(2, n)), min(_SOFT_FLOOR, self.candidate_max_length)), ([0, 1], _SOFT_FLOOR),
                  (list(range(n)), 0)]
        return render(fit_lengths(lengths, stages, lambda lens: len(render(lens)), self.max_length))
