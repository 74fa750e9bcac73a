"""Fuser helpers that need no model: prompt fitting, generation settings, input checks, registry."""

from __future__ import annotations

import subprocess
import sys

import pytest

from blender_serve.config import FuserConfig
from blender_serve.errors import InvalidInputError
from blender_serve.fuser import FUSERS, GenFuser, PromptedFuser, check_item, format_fuse_input
from blender_serve.fuser._fit import fit_lengths, water_fill
from blender_serve.fuser.hf import generation_params


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
    assert generation_params({}, num_beams=4, max_new_tokens=128) == (
        {"num_beams": 4, "max_new_tokens": 128, "do_sample": False}, None)
    params, seed = generation_params({"temperature": 0.7, "top_p": 0.9, "seed": 3, "top_k": None},
                                     num_beams=4, max_new_tokens=128)
    assert params == {"num_beams": 1, "max_new_tokens": 128, "do_sample": True, "temperature": 0.7, "top_p": 0.9}
    assert seed == 3
    assert generation_params({"temperature": 0}, num_beams=4, max_new_tokens=9)[0]["do_sample"] is False
    assert generation_params({}, num_beams=4, max_new_tokens=9, streaming=True)[0]["num_beams"] == 1
    for bad in ({"beams": 2}, {"num_beams": 0}, {"max_new_tokens": 1.5}, {"top_p": 0}, {"temperature": -1},
                {"top_k": -1}):
        with pytest.raises(InvalidInputError):
            generation_params(bad, num_beams=4, max_new_tokens=9)
    with pytest.raises(InvalidInputError, match="stream"):
        generation_params({"num_beams": 4}, num_beams=4, max_new_tokens=9, streaming=True)


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
    assert FUSERS == {"seq2seq": GenFuser, "causal": PromptedFuser}
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
