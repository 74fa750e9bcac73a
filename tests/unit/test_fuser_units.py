"""Fuser helpers that need no model: prompt fitting, generation settings, input checks, registry."""

from __future__ import annotations

import subprocess
import sys

import pytest

from blender_serve.config import FuserConfig
from blender_serve.errors import InvalidInputError
from blender_serve.fuser import FUSERS, GeneratorFuser, GenFuser, PromptedFuser, ScriptedFuser, check_item, format_fuse_input
from blender_serve.fuser._fit import fit_lengths, water_fill
from blender_serve.fuser.hf import generation_params
from blender_serve.types import SamplingParams


def test_water_fill_cuts_longest_first_evenly_and_respects_floors():
    assert water_fill([100, 40, 10], [0, 0, 0], 70) == [35, 35, 10]
    assert water_fill([100, 40, 10], [0, 0, 0], 0) == [100, 40, 10]
    assert water_fill([100, 40, 10], [50, 50, 50], 1000) == [50, 40, 10]
    cut = water_fill([300, 200, 5], [0, 0, 0], 123)
    assert sum([300, 200, 5]) - sum(cut) >= 123 and cut[2] == 5 and cut[0] == cut[1]


def test_fit_lengths_cuts_stages_in_order_and_raises_when_impossible():
    measure = lambda lens: sum(lens) + 10  # noqa: E731 - 10 tokens of scaffolding
    stages = [([2, 3], 5), ([0, 1], 5), ([0, 1, 2, 3], 0)]
    assert fit_lengths([20, 20, 50, 30], stages, measure, 200) == [20, 20, 50, 30]
    assert fit_lengths([20, 20, 50, 30], stages, measure, 80) == [20, 20, 15, 15]  # candidates only
    assert fit_lengths([20, 20, 50, 30], stages, measure, 40) == [10, 10, 5, 5]
    with pytest.raises(InvalidInputError, match="max_length"):
        fit_lengths([20, 20, 50, 30], stages, measure, 9)


def test_generation_params_defaults_overrides_and_errors():
    greedy = {"num_beams": 4, "max_new_tokens": 128, "do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    assert generation_params({}, num_beams=4, max_new_tokens=128) == (greedy, None, [])
    params, seed, stops = generation_params({"temperature": 0.7, "top_p": 0.9, "seed": 3, "top_k": None, "stop": "END"},
                                            num_beams=4, max_new_tokens=128)
    assert params == {"num_beams": 1, "max_new_tokens": 128, "do_sample": True, "temperature": 0.7, "top_p": 0.9,
                      "top_k": None}
    assert (seed, stops) == (3, ["END"])
    assert generation_params({"temperature": 0}, num_beams=4, max_new_tokens=9)[0]["do_sample"] is False
    assert generation_params({}, num_beams=4, max_new_tokens=9, streaming=True)[0]["num_beams"] == 1
    for bad in ({"beams": 2}, {"num_beams": 0}, {"max_new_tokens": 1.5}, {"top_p": 0}, {"temperature": -1},
                {"top_k": -1}, {"stop": [3]}):
        with pytest.raises(InvalidInputError):
            generation_params(bad, num_beams=4, max_new_tokens=9)
    with pytest.raises(InvalidInputError, match="stream"):
        generation_params({"num_beams": 4}, num_beams=4, max_new_tokens=9, streaming=True)


def test_request_sampling_reaches_the_fuser_with_its_config_as_default_and_cap():
    def settings(sampling, **overrides):
        return generation_params(overrides, sampling=sampling, num_beams=4, max_new_tokens=100)

    assert settings(SamplingParams(max_tokens=12))[0]["max_new_tokens"] == 12
    assert settings(SamplingParams(max_tokens=5000))[0]["max_new_tokens"] == 100  # the operator's bound holds
    assert settings(SamplingParams())[0]["max_new_tokens"] == 100
    params, seed, stops = settings(SamplingParams(temperature=0.5, top_p=0.8, seed=11, stop=["\n\n", "END"]))
    assert (params["do_sample"], params["temperature"], params["top_p"], params["num_beams"]) == (True, 0.5, 0.8, 1)
    assert (seed, stops) == (11, ["\n\n", "END"])
    assert settings(SamplingParams(temperature=0))[0]["do_sample"] is False
    # A library caller's explicit keyword wins over the request's setting.
    assert settings(SamplingParams(max_tokens=12), max_new_tokens=40)[0]["max_new_tokens"] == 40


@pytest.mark.parametrize("args, match", [
    (("q", "", []), "at least one candidate"),
    (("q", "", "just one string"), "list of str"),
    (("q", "", ["ok", 3]), "candidate 1 is a int"),
    ((None, "", ["ok"]), "instruction must be a str"),
    (("q", 5, ["ok"]), "input must be a str"),
    (("q", "", ["", "  "]), "every candidate is empty"),
    (("", " ", ["ok"]), "both empty"),
])
def test_check_item_rejects_bad_input_saying_what_to_do(args, match):
    with pytest.raises(InvalidInputError, match=match):
        check_item(*args)


def test_registry_maps_config_kinds():
    assert FUSERS == {"seq2seq": GenFuser, "causal": PromptedFuser, "generator": GeneratorFuser, "scripted": ScriptedFuser}
    assert set(FUSERS) == set(FuserConfig.model_fields["kind"].annotation.__args__)


def test_format_fuse_input_is_the_gen_fuser_training_format():
    assert format_fuse_input("Say hi.", "", ["hi", "hello"]) == (
        "Instruction: Say hi.</s>Input: </s>Candidate 0: <extra_id_0>:hi</s>Candidate 1: <extra_id_1>:hello"
        "</s>Summarize candidates into a better one for the given instruction:"
    )


def test_importing_the_fuser_package_loads_no_torch():
    code = "import sys, blender_serve.fuser; print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
