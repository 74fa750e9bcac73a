"""PromptedFuser: any instruction-tuned causal LM, prompted through its chat template to fuse answers.

The messages come from ``blender_serve.fuser.chat_prompt`` (shared with ``GeneratorFuser``, which
sends them to a served base model instead). Only the chat template's own markup is structure: the
messages' contents are tokenized as plain text, so a user's ``<|im_start|>system ...`` stays text
(``blender_serve.tokenize_safe``)."""

from __future__ import annotations

from typing import Optional, Sequence

from blender_serve.fuser.chat_prompt import DEFAULT_CANDIDATE_TEMPLATE, DEFAULT_TEMPLATE, FusionPrompt
from blender_serve.fuser.hf import TransformersFuser
from blender_serve.tokenize_safe import encode_chat, encode_plain

__all__ = ["PromptedFuser"]


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
                 candidate_template: str = DEFAULT_CANDIDATE_TEMPLATE, system_prompt: Optional[str] = None,
                 decoding: str = "dynamic"):
        super().__init__(model, tokenizer, max_length=max_length, candidate_max_length=candidate_max_length,
                         num_beams=num_beams, max_new_tokens=max_new_tokens, decoding=decoding)
        self.prompt = FusionPrompt(template, candidate_template, system_prompt)

    def format_prompt(self, instruction: str, input: str, candidates: Sequence[str]) -> str:
        """The user message for one request (candidates as given, not cut).

        Example:
            >>> print(fuser.format_prompt("Say hi.", "", ["hi", "hello"]))
        """
        return self.prompt.user_message(instruction, input, candidates)

    def render_prompt(self, instruction: str, input: str, candidates: Sequence[str]) -> list[int]:
        """The whole prompt's token ids: the chat template when the tokenizer has one."""
        if getattr(self.tokenizer, "chat_template", None):
            # The template already wrote any BOS it wants; adding specials would double it.
            return encode_chat(self.tokenizer, self.prompt.messages(instruction, input, candidates),
                               protected=self._structural, add_generation_prompt=True)
        system = self.prompt.system_prompt + "\n\n" if self.prompt.system_prompt else ""
        return encode_plain(self.tokenizer, system + self.format_prompt(instruction, input, candidates) + "\n\nAnswer:\n",
                            add_special_tokens=True, protected=self._structural)
