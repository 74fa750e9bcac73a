"""GenFuser: the LLM-Blender seq2seq fuser (the ``llm-blender/gen_fuser_3b`` layout, a Flan-T5)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Sequence

from blender_serve.errors import InvalidInputError
from blender_serve.fuser._fit import cut_text, fit_lengths
from blender_serve.fuser.hf import TransformersFuser, load_pretrained

if TYPE_CHECKING:
    from blender_serve.config import FuserConfig

__all__ = ["GenFuser", "format_fuse_input", "FUSE_SUFFIX"]

#: The line gen_fuser was trained to act on; it must end every input.
FUSE_SUFFIX = "</s>Summarize candidates into a better one for the given instruction:"

# When an input is too long, candidates are cut down to this many tokens before the instruction or
# input lose anything; only then is everything cut further, evenly.
_SOFT_FLOOR = 32


def format_fuse_input(instruction: str, input: str, candidates: Sequence[str]) -> str:
    """The text gen_fuser reads (candidates already cut), exactly as it was trained on.

    Example:
        >>> format_fuse_input("Say hi.", "", ["hi", "hello"])
        'Instruction: Say hi.</s>Input: </s>Candidate 0: <extra_id_0>:hi</s>Candidate 1: <extra_id_1>:hello</s>Summarize ...'
    """
    cands = "</s>".join(f"Candidate {i}: <extra_id_{i}>:" + c for i, c in enumerate(candidates))
    return "</s>".join(["Instruction: " + instruction, "Input: " + input, cands]) + FUSE_SUFFIX


class GenFuser(TransformersFuser):
    """LLM-Blender's GenFuser: a seq2seq model that reads the top-K candidates and writes one answer.

    Loads ``llm-blender/gen_fuser_3b`` (or any checkpoint in its layout) unchanged. Unlike the
    reference, an input over ``max_length`` is fitted by cutting candidates first (longest first),
    then the instruction and input, so the final instruction line is never lost.

    Example:
        >>> fuser = GenFuser.from_pretrained("llm-blender/gen_fuser_3b")
        >>> fuser.fuse("Name a French city.", "", ["Paris", "Lyon is a French city"]).text
    """

    kind = "seq2seq"

    def __init__(self, model, tokenizer, *, max_length: int = 1024, candidate_max_length: int = 128,
                 num_beams: int = 4, max_new_tokens: int = 128):
        super().__init__(model, tokenizer, max_length=max_length, candidate_max_length=candidate_max_length,
                         num_beams=num_beams, max_new_tokens=max_new_tokens)
        vocab = tokenizer.get_vocab()
        # Each candidate is tagged <extra_id_i>: a T5 tokenizer has 100 of them (0..99).
        self.max_candidates = next(i for i in range(len(vocab) + 1) if f"<extra_id_{i}>" not in vocab)

    @classmethod
    def from_pretrained(cls, path_or_id: str, device: str = "auto", dtype: str = "auto",
                        device_map: Optional[str] = None, **config_fields) -> "GenFuser":
        """Load a gen_fuser checkpoint (AutoModelForSeq2SeqLM + its tokenizer).

        Args:
            path_or_id: local directory or hub id, e.g. ``"llm-blender/gen_fuser_3b"``.
            device: 'auto' (cuda, else mps, else cpu), 'cpu', 'cuda:1'...; ignored with device_map.
            dtype: 'auto' (bfloat16 on an accelerator, float32 on cpu) or an explicit dtype name.
            device_map: accelerate device map (e.g. 'auto') to spread a large model.
            **config_fields: max_length, candidate_max_length, num_beams, max_new_tokens.

        Returns:
            a ready GenFuser.

        Example:
            >>> GenFuser.from_pretrained("/models/gen_fuser_3b", device="cuda", num_beams=1)
        """
        from transformers import AutoModelForSeq2SeqLM

        model, tokenizer = load_pretrained(AutoModelForSeq2SeqLM, path_or_id, device, dtype, device_map)
        return cls(model, tokenizer, **config_fields)

    @classmethod
    def _from_config(cls, config: "FuserConfig") -> "GenFuser":
        return cls.from_pretrained(
            config.path, device=config.device, dtype=config.dtype, device_map=config.device_map,
            max_length=config.max_length, candidate_max_length=config.candidate_max_length,
            num_beams=config.num_beams, max_new_tokens=config.max_new_tokens,
        )

    def _check(self, instruction: str, input: str, candidates: Sequence[str]) -> None:
        super()._check(instruction, input, candidates)
        if len(candidates) > self.max_candidates:
            raise InvalidInputError(
                f"gen_fuser tags candidates with <extra_id_0..{self.max_candidates - 1}>, so it reads at most "
                f"{self.max_candidates} candidates; got {len(candidates)}: pass the top-K only"
            )

    def build_input_ids(self, instruction: str, input: str, candidates: Sequence[str]) -> list[int]:
        """The token ids gen_fuser reads for one request (no special tokens added), at most max_length.

        Each candidate is first cut to ``candidate_max_length`` tokens with '...' appended, as the
        reference does; when the whole text fits, the ids equal the reference's. When it does not,
        candidates are cut further (longest first, evenly), then the instruction and input, so the
        closing "Summarize candidates..." line always survives.

        Args:
            instruction, input, candidates: as for ``fuse``.

        Returns:
            a list of token ids, ``len <= max_length``.

        Example:
            >>> ids = fuser.build_input_ids("Say hi.", "", ["hi", "hello"])
        """
        self._check(instruction, input, candidates)
        encode = lambda text: self.tokenizer.encode(text, add_special_tokens=False)  # noqa: E731
        texts = [instruction, input, *candidates]
        ids = [encode(t) for t in texts]
        n_cands = len(candidates)
        lengths = [len(ids[0]), len(ids[1])] + [min(len(c), self.candidate_max_length) for c in ids[2:]]

        def render(lens: list[int]) -> list[int]:
            cut = [cut_text(self.tokenizer, t, i, n) for t, i, n in zip(texts, ids, lens)]
            return encode(format_fuse_input(cut[0], cut[1], cut[2:]))

        cand_idx = list(range(2, 2 + n_cands))
        stages = [(cand_idx, min(_SOFT_FLOOR, self.candidate_max_length)), ([0, 1], _SOFT_FLOOR),
                  (list(range(2 + n_cands)), 0)]
        fitted = fit_lengths(lengths, stages, lambda lens: len(render(lens)), self.max_length)
        return render(fitted)
