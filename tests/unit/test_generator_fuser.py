"""GeneratorFuser (FuserConfig kind 'generator') without a model: the fusion prompt sent to a scripted
base model that echoes it, its configs, its sampling rules and the in-process pipeline over it."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError

from blender_serve.config import BlenderConfig, FuserConfig
from blender_serve.errors import InvalidInputError, UnknownModelError
from blender_serve.fuser import FusionPrompt, GeneratorFuser, build_fuser
from blender_serve.fuser.via_generator import CHARS_PER_TOKEN
from blender_serve.generators import build_generator
from blender_serve.pipeline import FUSER_FAILED, Blender
from blender_serve.types import SamplingParams

ITEM = ("Answer the question.", "What is the capital of France?", ["Paris.", "It is Paris, in France."])


def echo(name: str = "echo", **options):
    """A scripted base model whose answer is the last user message it was sent."""
    return build_generator({"name": name, "backend": "scripted", "options": {"template": "{prompt}", **options}})


def ensemble(fuser: dict, **kw) -> BlenderConfig:
    gens = [{"name": "alpha", "backend": "scripted", "options": {"template": "alpha: {prompt}"}},
            {"name": "echo", "backend": "scripted", "options": {"template": "{prompt}"}}]
    return BlenderConfig(generators=gens, ranker={"kind": "scripted", "path": "scripted"}, fuser=fuser,
                         fusion="always", top_k=2, **kw)


# -- configs -----------------------------------------------------------------------------------

def test_generator_kind_config_is_coherent():
    cfg = FuserConfig(kind="generator", generator="echo", max_new_tokens=64, num_beams=1)
    assert cfg.path is None and cfg.generator == "echo"
    assert FuserConfig(**cfg.model_dump()) == cfg  # the ingress receives the config as a dict
    assert FuserConfig(kind="causal", path="/m").generator is None


@pytest.mark.parametrize("fields, match", [
    ({"kind": "generator"}, "needs generator"),
    ({"kind": "generator", "generator": "echo", "path": "/m"}, r"loads no model, so \['path'\]"),
    ({"kind": "generator", "generator": "echo", "device": "cuda", "dtype": "float16"}, r"\['device', 'dtype'\]"),
    ({"kind": "generator", "generator": "echo", "num_beams": 2}, "no beam search"),
    ({"kind": "causal"}, "needs path"),
    ({"path": "/m", "generator": "echo"}, "kind 'generator' only"),
])
def test_fuser_config_errors_say_what_to_do(fields, match):
    with pytest.raises(ValidationError, match=match):
        FuserConfig(**fields)


def test_the_ensemble_must_have_the_named_base_model():
    with pytest.raises(ValidationError, match=r"fuser.generator 'nope' is not a base model of this ensemble; name one of \['alpha', 'echo'\]"):
        ensemble({"kind": "generator", "generator": "nope"})


def test_the_app_refuses_deployment_options_for_a_fuser_without_a_deployment():
    from deployments.config import AppArgs

    args = {"ensemble": ensemble({"kind": "generator", "generator": "echo"}).model_dump()}
    AppArgs(**args, deployments={"echo": {"num_replicas": 2}})
    with pytest.raises(ValidationError, match="runs on base model 'echo' and has no deployment"):
        AppArgs(**args, deployments={"fuser": {"num_replicas": 2}})


def test_build_fuser_needs_the_generators():
    cfg = FuserConfig(kind="generator", generator="echo")
    gen = echo()
    fuser = build_fuser(cfg, {"echo": gen})
    assert isinstance(fuser, GeneratorFuser) and fuser.generator is gen
    with pytest.raises(UnknownModelError, match="not among the generators given"):
        build_fuser(cfg)


# -- the prompt --------------------------------------------------------------------------------

def test_messages_are_the_shared_fusion_prompt():
    fuser = GeneratorFuser(echo(), system_prompt="Be brief.")
    msgs = fuser.messages(*ITEM)
    assert [m.model_dump() for m in msgs] == FusionPrompt(system_prompt="Be brief.").messages(*ITEM)
    assert msgs[-1].content.endswith("## Answer 1\nParis.\n\n## Answer 2\nIt is Paris, in France.")
    with pytest.raises(InvalidInputError, match="at least one candidate"):
        fuser.messages("q", "", [])


def test_long_texts_are_cut_candidates_first_to_the_estimated_budget():
    long = "word " * 400  # 2000 characters, about 500 tokens
    fuser = GeneratorFuser(echo(), candidate_max_length=50, max_length=4000)
    user = fuser.messages("Q?", "", [long, "short"])[-1].content
    assert long[:50 * CHARS_PER_TOKEN] + "..." in user and "short" in user
    tight = GeneratorFuser(echo(), candidate_max_length=1000, max_length=150)
    user = tight.messages("Q?", "", [long, long])[-1].content
    assert len(user) <= 150 * CHARS_PER_TOKEN and user.count("...") == 2 and "Q?" in user
    with pytest.raises(InvalidInputError, match="template alone is over max_length=10 tokens"):
        GeneratorFuser(echo(), max_length=10).messages(*ITEM)


def test_sampling_is_the_requests_capped_and_greedy_by_default():
    fuser = GeneratorFuser(echo(), max_new_tokens=100)
    assert fuser.sampling(None) == SamplingParams(max_tokens=100, temperature=0.0)
    s = fuser.sampling(SamplingParams(max_tokens=5000, temperature=0.7, top_p=0.9, seed=3, stop=["END"]))
    assert s == SamplingParams(max_tokens=100, temperature=0.7, top_p=0.9, seed=3, stop=["END"])
    assert fuser.sampling(SamplingParams(max_tokens=12)).max_tokens == 12
    assert fuser.sampling(None, max_new_tokens=7, num_beams=1, temperature=None).max_tokens == 7
    assert "stop" not in fuser.sampling(None).model_fields_set  # the base model's own stop strings stay
    with pytest.raises(InvalidInputError, match="one sequence"):
        fuser.sampling(None, num_beams=4)
    with pytest.raises(InvalidInputError, match="unknown generation settings"):
        fuser.sampling(None, beams=2)


# -- fusing ------------------------------------------------------------------------------------

def test_afuse_stream_and_fuse_batch_return_what_the_base_model_wrote():
    gen = echo()
    fuser = GeneratorFuser(gen, max_new_tokens=500)
    prompt = fuser.messages(*ITEM)[-1].content

    async def both():
        one = await fuser.afuse(*ITEM)
        chunks = [c async for c in fuser.stream(*ITEM)]
        return one, chunks

    one, chunks = asyncio.run(both())
    assert one.text == prompt and one.finish_reason == "stop" and one.usage.completion_tokens == len(prompt.split())
    assert "".join(c.text for c in chunks) == prompt and chunks[-1].usage == one.usage
    short = fuser.fuse(*ITEM, sampling=SamplingParams(max_tokens=3))
    assert short.finish_reason == "length" and short.usage.completion_tokens == 3
    assert [o.text for o in fuser.fuse_batch([ITEM, ITEM])] == [prompt, prompt]
    assert gen.activity.calls == 5 and gen.activity.succeeded == 5
    with pytest.raises(InvalidInputError, match="one sequence"):
        fuser.stream(*ITEM, num_beams=2)  # bad settings raise before iteration

    async def blocking_inside_a_loop():
        fuser.fuse(*ITEM)

    with pytest.raises(InvalidInputError, match="await fuser.afuse"):
        asyncio.run(blocking_inside_a_loop())


def test_the_pipeline_fuses_through_its_own_base_model():
    blender = Blender(ensemble({"kind": "generator", "generator": "echo", "max_new_tokens": 500}))
    assert isinstance(blender.fuser, GeneratorFuser) and blender.fuser.generator is blender.generators["echo"]
    result = blender.blend_sync("Name a colour.")
    assert result.fused and set(result.chosen) == {"alpha", "echo"}
    texts = {c.model: c.text for c in result.candidates}
    assert result.text == blender.fuser.messages("Name a colour.", "", [texts[m] for m in result.chosen])[-1].content
    assert blender.generators["echo"].activity.calls == 2  # its candidate, then the fusion
    fused_usage = result.usage.completion_tokens - sum(c.usage.completion_tokens for c in result.candidates)
    assert fused_usage == len(result.text.split())

    async def streamed():
        s = blender.stream("Name a colour.")
        return "".join([p async for p in s]), s.result

    text, streamed_result = asyncio.run(streamed())
    assert text == result.text and streamed_result.fused


def test_a_failing_fusion_degrades_to_the_top_candidate():
    config = ensemble({"kind": "generator", "generator": "echo"})
    blender = Blender(config, generators={"echo": echo(fail_every=2)})  # its candidate works, the fusion call fails
    result = blender.blend_sync("Name a colour.")
    assert not result.fused and result.degraded == ["unfused"] and result.fusion_skipped_reason == FUSER_FAILED
    assert "scripted failure" in result.errors["fuser"]
