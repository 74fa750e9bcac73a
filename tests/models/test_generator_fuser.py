"""GeneratorFuser on a real (tiny) causal LM: fusion written by a base model's own generator.

The same checkpoint as a PromptedFuser's own copy, prompted with the same messages through the same
chat template and decoded greedily, must write the very same answer: the fuser adds no model, only
the prompt."""

from __future__ import annotations

import asyncio

import pytest

from blender_serve.fuser import GeneratorFuser, PromptedFuser
from blender_serve.generators import build_generator
from blender_serve.pipeline import Blender

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ITEM = ("Answer the question.", "What is the capital of France?",
        ["Paris is the capital of France.", "The capital is Paris.", "Rome"])


@pytest.fixture(scope="module")
def lm(causal_lm_dir):
    gen = build_generator({"name": "lm", "backend": "transformers", "model": str(causal_lm_dir),
                           "options": {"device": "cpu"}})
    yield gen
    asyncio.run(gen.close())


def test_the_fused_text_is_the_base_models_answer_to_the_fusion_prompt(lm, causal_lm_dir):
    fuser = GeneratorFuser(lm, max_new_tokens=12)
    calls = lm.activity.calls

    async def run():
        one = await fuser.afuse(*ITEM)
        pieces = [c async for c in fuser.stream(*ITEM)]
        direct = await lm.generate(fuser.messages(*ITEM), {"temperature": 0, "max_tokens": 12})
        return one, pieces, direct

    one, pieces, direct = asyncio.run(run())
    assert one.text and one.text == direct.text and one.usage == direct.usage
    assert "".join(c.text for c in pieces) == one.text and pieces[-1].usage == one.usage
    assert 1 <= one.usage.completion_tokens <= 12 and one.finish_reason in ("stop", "length")
    assert lm.activity.calls == calls + 3

    # A PromptedFuser loading its own copy of the checkpoint writes the same answer from the same prompt.
    own = PromptedFuser.from_pretrained(str(causal_lm_dir), device="cpu", max_new_tokens=12)
    mine = own.fuse(*ITEM)
    assert (mine.text, mine.usage, mine.finish_reason) == (one.text, one.usage, one.finish_reason)
    # The request's max_tokens bounds it, under the fuser's cap.
    assert asyncio.run(fuser.afuse(*ITEM, sampling={"max_tokens": 3})).usage.completion_tokens <= 3


def test_the_pipeline_fuses_with_its_own_base_model(lm, causal_lm_dir):
    config = {"generators": [{"name": "lm", "backend": "transformers", "model": str(causal_lm_dir)},
                             {"name": "canned", "backend": "scripted", "options": {"template": "Paris, of course."}}],
              "ranker": {"kind": "scripted", "path": "scripted"},
              "fuser": {"kind": "generator", "generator": "lm", "max_new_tokens": 10},
              "fusion": "always", "top_k": 2}
    blender = Blender(config, generators={"lm": lm})
    calls = lm.activity.calls
    result = blender.blend_sync("What is the capital of France?", sampling={"max_tokens": 8})
    assert result.fused and set(result.chosen) == {"lm", "canned"}
    texts = {c.model: c.text for c in result.candidates}
    expected = asyncio.run(blender.fuser.afuse("What is the capital of France?", "", [texts[m] for m in result.chosen],
                                               sampling={"max_tokens": 8}))
    assert result.text == expected.text
    assert lm.activity.calls == calls + 3  # its candidate and the fusion, then the check


def test_eval_fuses_with_the_base_models_checkpoint(causal_lm_dir, tmp_path):
    import yaml

    from blender_serve.errors import InvalidInputError
    from blender_serve.eval.harness import load_fuser

    ensemble = {"generators": [{"name": "lm", "backend": "transformers", "model": str(causal_lm_dir)},
                               {"name": "canned", "backend": "scripted"}],
                "ranker": {"kind": "scripted", "path": "scripted"},
                "fuser": {"kind": "generator", "generator": "lm", "max_new_tokens": 7}}
    (tmp_path / "ens.yaml").write_text(yaml.safe_dump(ensemble))
    fuser, cfg = load_fuser(str(tmp_path / "ens.yaml"))
    assert isinstance(fuser, PromptedFuser) and (cfg.kind, cfg.path, cfg.max_new_tokens) == ("causal", str(causal_lm_dir), 7)
    ensemble["fuser"]["generator"] = "canned"
    (tmp_path / "ens.yaml").write_text(yaml.safe_dump(ensemble))
    with pytest.raises(InvalidInputError, match="no local checkpoint"):
        load_fuser(str(tmp_path / "ens.yaml"))
