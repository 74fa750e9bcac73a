"""`collect` with in-process scripted models: candidates per model, scores, resume, failures, config files."""

from __future__ import annotations

import asyncio
import json
import textwrap

import pytest

from blender_serve.collect import collect, decoding_method, endpoint_generators
from blender_serve.config import BlenderConfig, GeneratorConfig, load_ensemble_config
from blender_serve.data import read_records, write_records
from blender_serve.errors import InvalidInputError

TASKS = [
    {"id": "t1", "instruction": "What is 2 + 2? Answer with the number only.", "input": "", "output": "4",
     "verifiers": [{"kind": "exact_answer", "answers": ["4"], "mode": "number"}]},
    {"id": "t2", "instruction": "Describe the sea in all lowercase letters.", "input": "",
     "verifiers": [{"kind": "lowercase"}]},
    {"id": "t3", "instruction": "Summarise:", "input": "Ünïcödé text ✓ 日本語", "output": "a summary"},
]


def _config(*extra) -> BlenderConfig:
    gens = [
        {"name": "four", "backend": "scripted", "options": {"template": "4"}},
        {"name": "shouty", "backend": "scripted", "options": {"template": "THE ANSWER IS FIVE"}},
        {"name": "echo", "backend": "scripted", "options": {"template": "{prompt}"}},
        *extra,
    ]
    return BlenderConfig(generators=gens, ranker={"path": "/unused"})


@pytest.fixture
def tasks(tmp_path):
    path = tmp_path / "tasks.jsonl"
    write_records(path, TASKS)
    return path


def test_every_model_answers_every_record_and_candidates_are_scored(tasks, tmp_path):
    out = tmp_path / "cands.jsonl"
    report = asyncio.run(collect(_config(), tasks, out, progress=False))
    assert report.written == 3 and report.skipped_existing == 0
    records = {r.id: r for r in read_records(out)}
    assert set(records) == {"t1", "t2", "t3"}
    for r in records.values():
        assert r.models == ["four", "shouty", "echo"]
    t1 = records["t1"]
    assert t1.candidate("four").scores["verify_all"] == 1.0
    assert t1.candidate("shouty").scores["verify_all"] == 0.0
    assert t1.candidate("four").scores["bleu"] == pytest.approx(100.0)  # "4" against the reference "4"
    assert t1.candidate("four").scores["rougeL"] == pytest.approx(100.0)
    t2 = records["t2"]
    assert "bleu" not in t2.candidate("four").scores  # no reference: no text metric
    assert t2.candidate("shouty").scores == {"verify": 0.0, "verify_all": 0.0}
    # The verifiers travel with the record, and unicode input survives the round trip.
    assert t2.model_extra["verifiers"] == [{"kind": "lowercase"}]
    assert records["t3"].input == "Ünïcödé text ✓ 日本語"
    assert records["t3"].candidate("echo").text == "Summarise:\n\nÜnïcödé text ✓ 日本語"
    assert "verify" not in records["t3"].candidate("echo").scores
    assert t1.candidate("four").decoding_method == "default"  # no sampling settings: the backend's default


def test_rerun_resumes_and_limit_stops_early(tasks, tmp_path):
    out = tmp_path / "cands.jsonl"
    first = asyncio.run(collect(_config(), tasks, out, limit=2, progress=False))
    assert first.written == 2
    second = asyncio.run(collect(_config(), tasks, out, progress=False))
    assert (second.written, second.skipped_existing) == (1, 2)
    ids = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert sorted(ids) == ["t1", "t2", "t3"]  # each once
    # A run killed mid-write leaves half a line: the next run drops it and answers that record again.
    with open(out, "a") as f:
        f.write('{"id": "t4", "instr')
    with open(tasks, "a") as f:
        f.write(json.dumps({"id": "t4", "instruction": "Hi"}) + "\n")
    third = asyncio.run(collect(_config(), tasks, out, progress=False))
    assert (third.written, third.skipped_existing) == (1, 3)
    assert sorted(r.id for r in read_records(out)) == ["t1", "t2", "t3", "t4"]


def test_a_failing_model_is_counted_and_left_out(tasks, tmp_path):
    flaky = {"name": "flaky", "backend": "scripted", "options": {"fail": True}}
    out = tmp_path / "cands.jsonl"
    report = asyncio.run(collect(_config(flaky), tasks, out, progress=False))
    assert report.failed_generations["flaky"] == 3
    assert all("flaky" not in r.models for r in read_records(out))


def test_concurrency_bounds_calls_in_flight(tasks, tmp_path):
    slow = [{"name": f"s{i}", "backend": "scripted", "options": {"template": "x", "latency_s": 0.2}} for i in range(4)]
    config = BlenderConfig(generators=slow, ranker={"path": "/unused"})
    t_serial = asyncio.run(collect(config, tasks, tmp_path / "a.jsonl", concurrency=1, progress=False)).seconds
    t_wide = asyncio.run(collect(config, tasks, tmp_path / "b.jsonl", concurrency=12, progress=False)).seconds
    assert t_serial >= 12 * 0.2  # 3 records x 4 models, one call at a time
    assert t_wide < t_serial / 3
    with pytest.raises(InvalidInputError):
        asyncio.run(collect(config, tasks, tmp_path / "c.jsonl", concurrency=0, progress=False))


def test_endpoint_generators_keep_or_drop_client_side_settings():
    config = BlenderConfig(generators=[
        {"name": "hot", "backend": "transformers", "model": "/m", "system_prompt": "be brief",
         "sampling": {"temperature": 1.1, "top_p": 0.95, "seed": 2, "max_tokens": 48}}], ranker={"path": "/r"})
    (served,) = endpoint_generators(config, "http://h/v1")  # a blender-serve endpoint owns the settings
    assert (served.backend, served.model, served.system_prompt) == ("openai", "hot", None)
    assert served.sampling.temperature is None and served.sampling.max_tokens == 48
    (one_model,) = endpoint_generators(config, "http://h/v1", endpoint_model="smollm2")
    assert (one_model.model, one_model.system_prompt, one_model.sampling.temperature) == ("smollm2", "be brief", 1.1)
    assert decoding_method(config.generators[0]) == "top_p_sampling(temperature=1.1,top_p=0.95,seed=2)+system_prompt"
    assert decoding_method(GeneratorConfig(name="g", backend="scripted", sampling={"temperature": 0})) == "greedy"


def test_load_ensemble_config_reads_serve_files_args_and_bare_ensembles(tmp_path):
    ensemble = {"generators": [{"name": "a", "backend": "scripted"}], "ranker": {"path": "/r"}}
    serve_file = tmp_path / "serve.yaml"
    serve_file.write_text(json.dumps({"applications": [
        {"name": "other", "import_path": "somewhere:app"},
        {"name": "mine", "import_path": "deployments.builder:build_app", "args": {"ensemble": ensemble}}]}))
    assert load_ensemble_config(str(serve_file)).generators[0].name == "a"
    assert load_ensemble_config(str(serve_file), app="mine").generators[0].name == "a"
    with pytest.raises(InvalidInputError, match="no blender-serve application named 'nope'"):
        load_ensemble_config(str(serve_file), app="nope")
    args_file = tmp_path / "args.yaml"
    args_file.write_text(textwrap.dedent("""\
        ensemble:
          generators: [{name: b, backend: scripted}]
          ranker: {path: /r}
        """))
    assert load_ensemble_config(str(args_file)).generators[0].name == "b"
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps(ensemble))
    assert load_ensemble_config(str(bare)).ranker.path == "/r"
    bad = tmp_path / "bad.yaml"
    bad.write_text("generators: [{name: a, backend: scripted, typo: 1}]\nranker: {path: /r}\n")
    with pytest.raises(InvalidInputError, match="typo"):
        load_ensemble_config(str(bad))
    with pytest.raises(InvalidInputError, match="cannot read"):
        load_ensemble_config(str(tmp_path / "missing.yaml"))


def test_shipped_miniature_config_is_the_collect_config():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    config = load_ensemble_config(str(root / "configs" / "miniature.yaml"))
    assert [g.name for g in config.generators] == ["smol-greedy", "smol-warm", "smol-hot", "smol-concise", "smol-careful"]
    assert config.ranker.path == "local:pairrm-minilm-mini"
