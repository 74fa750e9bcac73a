"""GenFuser: the LLM-Blender seq2seq fuser (the ``llm-blender/gen_fuser_3b`` layout, a Flan-T5).

Only the template's own ``</s>`` and ``<extra_id_i>`` are special tokens: a user's instruction, input
or candidate that spells one is tokenized as plain text (``blender_serve.tokenize_safe``)."""

from __future__ import annotations

from typing import Sequence

from blender_serve.errors import InvalidInputError
from blender_serve.fuser.hf import TransformersFuser
from blender_serve.tokenize_safe import Segment, encode_segments

__all__ = ["GenFuser", "format_fuse_input", "fuse_input_segments", "FUSE_SUFFIX"]

#: The line gen_fuser was trained to act on; it must end every input.
FUSE_SUFFIX = "</s>Summarize candidates into a better one for the given instruction:"


def fuse_input_segments(instruction: str, input: str, candidates: Sequence[str]) -> list[Segment]:
    """gen_fuser's input as ``(text, is_user)`` segments: the template's lines, and the user's texts between them.

    Example:
        >>> fuse_input_segments("Say hi.", "", ["hi"])[:3]
        [('Instruction: ', False), ('Say hi.', True), ('</s>Input: ', False)]
    """
    segments = [("Instruction: ", False), (instruction, True), ("</s>Input: ", False), (input, True), ("</s>", False)]
    for i, c in enumerate(candidates):
        segments += [(("</s>" if i else "") + f"Candidate {i}: <extra_id_{i}>:", False), (c, True)]
    return segments + [(FUSE_SUFFIX, False)]


def format_fuse_input(instruction: str, input: str, candidates: Sequence[str]) -> str:
    """The text gen_fuser reads (candidates already cut), exactly as it was trained on.

    Example:
        >>> format_fuse_input("Say hi.", "", ["hi", "hello"])
        'Instruction: Say hi.</s>Input: </s>Candidate 0: <extra_id_0>:hi</s>Candidate 1: <extra_id_1>:hello</s>Summarize ...'
    """
    return "".join(text for text, _ in fuse_input_segments(instruction, input, candidates))


class GenFuser(TransformersFuser):
    """LLM-Blender's GenFuser: a seq2seq model that reads the top-K candidates and writes one answer.

    Loads ``llm-blender/gen_fuser_3b`` (or any checkpoint in its layout) unchanged. Unlike the
    reference, an input over ``max_length`` is fitted by cutting candidates first (longest first),
    then the instruction and input, so the final instruction line is never lost. When the whole
    text fits, the ids equal the reference's.

    Example:
        >>> fuser = GenFuser.from_pretrained("llm-blender/gen_fuser_3b")
        >>> fuser.fuse("Name a French city.", "", ["Paris", "Lyon is a French city"]).text
    """

    kind = "seq2seq"
    auto_class = "AutoModelForSeq2SeqLM"

    def __init__(self, model, tokenizer, *, max_length: int = 1024, candidate_max_length: int = 128,
                 num_beams: int = 4, max_new_tokens: int = 128, decoding: str = "dynamic"):
        super().__init__(model, tokenizer, max_length=max_length, candidate_max_length=candidate_max_length,
                         num_beams=num_beams, max_new_tokens=max_new_tokens, decoding=decoding)
        vocab = tokenizer.get_vocab()
        # Each candidate is tagged <extra_id_i>: a T5 tokenizer has 100 of them (0..99).
        self.max_candidates = next(i for i in range(len(vocab) + 1) if f"<extra_id_{i}>" not in vocab)

    def check(self, instruction: str, input: str, candidates: Sequence[str]) -> None:
        super().check(instruction, input, candidates)
        if len(candidates) > self.max_candidates:
            raise InvalidInputError(
                f"gen_fuser tags candidates with <extra_id_0..{self.max_candidates - 1}>, so it reads at most "
                f"{self.max_candidates} candidates; got {len(candidates)}: pass the top-K only"
            )

    def render_prompt(self, instruction: str, input: str, candidates: Sequence[str]) -> list[int]:
        """gen_fuser's input ids (no special tokens added, as the reference tokenizes it); the user's
        texts are plain text, whatever special tokens they spell."""
        return encode_segments(self.tokenizer, fuse_input_segments(instruction, input, candidates),
                               protected=self._structural)
