"""The original PairRM config.json, written by one function, reads as the reference reads it."""

from __future__ import annotations

import dataclasses
import json

from blender_serve.ranker.layout import original_config, write_original_config


def test_config_has_exactly_the_reference_fields(tmp_path):
    from blender_serve.testing.reference import import_reference

    import_reference()
    from llm_blender.pair_ranker.config import RankerConfig

    path = write_original_config(tmp_path, model_type="deberta-v2", model_name="microsoft/deberta-v3-large")
    written = json.loads(path.read_text())
    assert set(written) == {f.name for f in dataclasses.fields(RankerConfig)}
    parsed = RankerConfig.from_dict(written)  # the reference's own reader
    assert (parsed.ranker_type, parsed.model_type, parsed.model_name) == ("pairranker", "deberta", "microsoft/deberta-v3-large")
    assert (parsed.source_maxlength, parsed.candidate_maxlength, parsed.n_tasks) == (1224, 412, 1)  # SPEC.md's defaults


def test_extra_keys_never_override_the_explicit_fields():
    config = original_config(model_type="bert", model_name="m", source_maxlength=128, candidate_maxlength=64,
                             extra={"source_maxlength": 9, "model_name": "other", "note": "kept"})
    assert (config["source_maxlength"], config["model_name"], config["note"]) == (128, "m", "kept")
    assert config["model_type"] == "bert" and original_config(model_type="xlm-roberta", model_name="m")["model_type"] == "xlm-roberta"
