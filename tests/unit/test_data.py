"""blender_serve.data: MixInstruct records, streaming readers, writers, conversions and signals."""

from __future__ import annotations

import copy
import gzip
import json
import math

import numpy as np
import pytest

import blender_serve.data.io as data_io
from blender_serve.data import (
    DataFormatError,
    MixRecord,
    ReadStats,
    RecordWriter,
    candidate_scores,
    cmp_matrix,
    cmp_scores,
    convert_file,
    existing_ids,
    from_plain,
    from_preference_pairs,
    iter_objects,
    iter_records,
    parse_signal,
    read_records,
    to_plain,
    to_preference_pairs,
    write_records,
)
from blender_serve.errors import InvalidInputError, UnknownModelError

MODELS = [  # the 12 candidate models of the released MixInstruct files (SPEC "MixInstruct")
    "oasst-sft-4-pythia-12b-epoch-3.5", "koala-7B-HF", "alpaca-native", "llama-7b-hf-baize-lora-bf16",
    "flan-t5-xxl", "stablelm-tuned-alpha-7b", "vicuna-13b-1.1", "dolly-v2-12b", "moss-moon-003-sft",
    "chatglm-6b", "mpt-7b", "mpt-7b-instruct",
]
SCORE_KEYS = ["logprobs", "rougeL", "rouge2", "rougeLsum", "rouge1", "bleu", "bertscore", "bleurt", "bartscore"]
TEXTS = ["Réponse café naïve", "答案：北京 🐼", "emoji 🎉🚀 and \"quotes\" \\ and\nnewlines", "plain"]


def raw_record(i: int, *, cmp_as_string: bool = False, with_cmp: bool = True) -> dict:
    """A record shaped like the released MixInstruct files, 12 candidates, some unicode."""
    record = {
        "id": f"unified_chip2/{69960 + i}",
        "instruction": "" if i % 2 else "Answer the question. ",
        "input": f"Question {i}: où est 北京? 🤔",
        "output": f"reference {i} ✓",
        "candidates": [
            {"decoding_method": "top_p_sampling", "model": model, "text": f"{TEXTS[k % 4]} #{i}.{k}",
             "scores": {key: round(0.01 * ((i + 3 * k + n) % 17) - 0.05, 4) for n, key in enumerate(SCORE_KEYS)}}
            for k, model in enumerate(MODELS)
        ],
    }
    if with_cmp:
        cmp = {f"{MODELS[0]},{MODELS[1]}": "A is better", f"{MODELS[2]},{MODELS[0]}": "Same good",
               f"{MODELS[3]},{MODELS[4]}": "B is better", f"{MODELS[5]},{MODELS[6]}": "Same bad"}
        record["cmp_results"] = json.dumps(cmp) if cmp_as_string else cmp
    return record


def expected_dict(raw: dict) -> dict:
    """What to_dict gives back for a raw record: the same, with cmp_results as a dict."""
    out = copy.deepcopy(raw)
    if isinstance(out.get("cmp_results"), str):
        out["cmp_results"] = json.loads(out["cmp_results"])
    return out


def write_json(path, items, indent=None):
    path.write_text(json.dumps(items, ensure_ascii=False, indent=indent), encoding="utf-8")
    return path


def write_jsonl(path, items):
    path.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in items), encoding="utf-8")
    return path


@pytest.fixture
def raws():
    return [raw_record(i, cmp_as_string=(i % 3 == 1), with_cmp=(i % 4 != 3)) for i in range(8)]


# ---- records ------------------------------------------------------------------------------------

def test_json_array_and_json_lines_give_identical_records(tmp_path, raws):
    from_array = read_records(write_json(tmp_path / "a.json", raws, indent=4))
    from_lines = read_records(write_jsonl(tmp_path / "a.jsonl", raws))
    assert from_array == from_lines
    assert [r.to_dict() for r in from_array] == [expected_dict(r) for r in raws]


def test_cmp_results_as_dict_or_json_string_read_the_same():
    as_dict, as_string = raw_record(0), raw_record(0, cmp_as_string=True)
    assert isinstance(as_string["cmp_results"], str)
    a, b = MixRecord.model_validate(as_dict), MixRecord.model_validate(as_string)
    assert a.cmp_results == b.cmp_results == as_dict["cmp_results"]
    assert b.to_dict()["cmp_results"] == as_dict["cmp_results"]  # written back as a dict


def test_absent_fields_stay_absent_and_extra_keys_survive():
    raw = {"id": "x", "instruction": "Do", "input": "it", "verifiers": [{"kind": "regex", "pattern": "a+"}],
           "candidates": [{"model": "m1", "text": "a", "scores": {"bleu": 0.5, "rougeL": None}, "seed": 3},
                          {"model": "m2", "text": "b"}]}
    record = MixRecord.model_validate(raw)
    assert record.output is None and record.cmp_results is None
    assert record.candidates[1].scores == {} and record.candidates[0].scores == {"bleu": 0.5}  # null dropped
    written = record.to_dict()
    assert "output" not in written and "cmp_results" not in written
    assert "scores" not in written["candidates"][1] and "decoding_method" not in written["candidates"][0]
    assert written["verifiers"] == raw["verifiers"] and written["candidates"][0]["seed"] == 3
    record.output = "ref"  # assigned later: now written
    assert record.to_dict()["output"] == "ref"


def test_twelve_candidates_source_models_and_lookup():
    record = MixRecord.model_validate(raw_record(0))
    assert record.models == MODELS and len(record.candidates) == 12
    assert record.source == "Answer the question. Question 0: où est 北京? 🤔"  # no separator (SPEC)
    assert record.candidate("vicuna-13b-1.1").text == record.candidates[6].text
    with pytest.raises(UnknownModelError, match="gpt-4") as info:
        record.candidate("gpt-4")
    assert isinstance(info.value, KeyError)


def test_id_coercion_and_record_level_rules():
    assert MixRecord(id=42).id == "42"
    with pytest.raises(ValueError, match="duplicate candidate model"):
        MixRecord(id="d", candidates=[{"model": "m", "text": "a"}, {"model": "m", "text": "b"}])
    with pytest.raises(ValueError, match="boolean"):
        MixRecord(id="b", candidates=[{"model": "m", "text": "a", "scores": {"bleu": True}}])
    with pytest.raises(ValueError, match="not 'modelA,modelB'"):
        MixRecord(id="k", cmp_results={"ab": "A is better"})
    with pytest.raises(ValueError, match="not valid JSON"):
        MixRecord(id="j", cmp_results="{oops")


def test_unicode_round_trip_is_written_as_is(tmp_path, raws):
    records = read_records(write_json(tmp_path / "in.json", raws))
    for name in ("out.json", "out.jsonl"):
        path = tmp_path / name
        assert write_records(path, records) == len(records)
        text = path.read_text(encoding="utf-8")
        assert "🐼" in text and "北京" in text and "naïve" in text and "\\u" not in text
        assert read_records(path) == records
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []  # temp files renamed away


def test_gzip_is_transparent(tmp_path, raws):
    records = read_records(write_jsonl(tmp_path / "in.jsonl", raws))
    for name in ("out.json.gz", "out.jsonl.gz"):
        path = tmp_path / name
        write_records(path, records)
        assert path.read_bytes()[:2] == b"\x1f\x8b"
        assert read_records(path) == records
    with gzip.open(tmp_path / "out.jsonl.gz", "rt", encoding="utf-8") as fh:
        assert json.loads(fh.readline())["id"] == raws[0]["id"]


def test_empty_files_and_empty_arrays_have_no_records(tmp_path):
    for i, text in enumerate(["", "  \n\n ", "[]", " \n [ \n ] \n", "\ufeff[]"]):
        path = tmp_path / f"e{i}.json"
        path.write_text(text, encoding="utf-8")
        assert read_records(path) == []


def test_write_format_from_suffix_or_argument(tmp_path):
    record = MixRecord(id="1", input="x")
    with pytest.raises(InvalidInputError, match="format"):
        write_records(tmp_path / "out.txt", [record])
    write_records(tmp_path / "out.txt", [record], format="jsonl")
    assert (tmp_path / "out.txt").read_text().startswith("{")
    write_records(tmp_path / "arr.json", [])
    assert json.loads((tmp_path / "arr.json").read_text()) == []


# ---- errors that say where ----------------------------------------------------------------------

def _bad(field_setter):
    raws = [raw_record(i) for i in range(4)]
    field_setter(raws[2])
    return raws


@pytest.mark.parametrize("setter, field, problem", [
    (lambda r: r["candidates"][2].pop("text"), "candidates[2].text", "Field required"),
    (lambda r: r["candidates"][2].update(text=17), "candidates[2].text", "valid string"),
    (lambda r: r["candidates"][3]["scores"].update(bleu="high"), "candidates[3].scores.bleu", "valid number"),
    (lambda r: r.update(cmp_results={f"{MODELS[0]},{MODELS[1]}": "A wins"}),
     f"cmp_results['{MODELS[0]},{MODELS[1]}']", "'A is better', 'B is better', 'Same good' or 'Same bad'"),
    (lambda r: r.update(candidates="none"), "candidates", "valid list"),
])
@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_malformed_record_names_file_record_id_and_field(tmp_path, setter, field, problem, fmt):
    raws = _bad(setter)
    path = (write_json if fmt == "json" else write_jsonl)(tmp_path / f"data.{fmt}", raws)
    with pytest.raises(DataFormatError) as info:
        read_records(path)
    err = info.value
    assert (err.path, err.record, err.record_id, err.field) == (str(path), 3, "unified_chip2/69962", field)
    assert isinstance(err, InvalidInputError)
    message = str(err)
    line = 1 if fmt == "json" else 3  # the array is all on one line
    assert message.startswith(f"{path}, record 3 (line {line}, id 'unified_chip2/69962'), field {field}: ")
    assert problem in message


def test_syntax_error_in_json_lines_names_line_and_is_skippable(tmp_path, raws):
    lines = [json.dumps(r, ensure_ascii=False) for r in raws[:3]]
    lines.insert(1, "")  # blank lines are skipped, but lines still count
    lines.insert(3, '{"id": "broken", "candidates": [}')
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"bad\.jsonl, record 3 \(line 4\): invalid JSON") as info:
        read_records(path)
    assert (info.value.record, info.value.line, info.value.field) == (3, 4, None)
    stats = ReadStats()
    assert [r.id for r in iter_records(path, skip_bad=True, stats=stats)] == [r["id"] for r in raws[:3]]
    assert (stats.read, stats.skipped) == (3, 1) and "line 4" in stats.errors[0]


@pytest.mark.parametrize("chunk", [7, 1 << 16])
def test_syntax_error_in_an_array_names_record_and_line_and_is_never_skipped(tmp_path, raws, monkeypatch, chunk):
    monkeypatch.setattr(data_io, "CHUNK_SIZE", chunk)
    text = json.dumps(raws[:3], ensure_ascii=False, indent=2)
    cut = text.index('"id": "unified_chip2/69962"')
    text = text[:cut] + '"id": "unified_chip2/69962" "oops": 1,' + text[cut + len('"id": "unified_chip2/69962",'):]
    path = tmp_path / "bad.json"
    path.write_text(text, encoding="utf-8")
    expected_line = text[:cut].count("\n") + 1
    for skip_bad in (False, True):
        with pytest.raises(DataFormatError, match="Expecting ',' delimiter") as info:
            read_records(path, skip_bad=skip_bad)
        assert (info.value.record, info.value.line) == (3, expected_line)
    text = json.dumps(raws[:3], ensure_ascii=False, indent=2)
    start = text.index('"id": "unified_chip2/69961"')  # break record 2 only
    text = text[:start] + text[start:].replace('"model": "koala-7B-HF"', '"model": 7', 1)
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"record 2 \(line (\d+), .*field candidates\[1\]\.model") as info:
        read_records(path)
    assert info.value.line == text[:text.index('"id": "unified_chip2/69961"')].count("\n")  # the line of its '{'


@pytest.mark.parametrize("text, problem", [
    ('[{"id": "a"},]', "trailing comma"),
    ('[{"id": "a"} {"id": "b"}]', "expected ',' or ']'"),
    ('[{"id": "a"}, {"id": "b"}', "ends inside the array"),
    ('[{"id": "a"}] {"id": "b"}', "after the array"),
    ('"just a string"', "expected a JSON array"),
])
def test_array_structure_errors(tmp_path, text, problem):
    path = tmp_path / "x.json"
    path.write_text(text)
    with pytest.raises(DataFormatError, match=problem):
        read_records(path)


def test_skip_bad_counts_and_keeps_the_first_twenty_messages(tmp_path):
    items = []
    for i in range(30):
        good = i % 6 == 0
        items.append({"id": i, "candidates": [{"model": "m", "text": "t" if good else None}]})
    items.append(["not", "an", "object"])
    items.append({"id": "empty", "candidates": []})
    path = write_json(tmp_path / "mixed.json", items)
    stats = ReadStats()
    records = list(iter_records(path, skip_bad=True, stats=stats, allow_no_candidates=False))
    assert [r.id for r in records] == ["0", "6", "12", "18", "24"]
    assert (stats.read, stats.skipped, len(stats.errors)) == (5, 27, 20)
    assert stats.errors[0].endswith("record 2 (line 1, id '1'), field candidates[0].text: Input should be a valid string")
    with pytest.raises(DataFormatError, match="record 2 .*field candidates: the record has no candidates"):
        list(iter_records(write_json(tmp_path / "e.json", items[:1] + items[-1:]), allow_no_candidates=False))
    assert len(read_records(tmp_path / "e.json")) == 2  # allowed by default
    with pytest.raises(DataFormatError, match=r"record 2 \(line 2\): expected a JSON object, found list"):
        read_records(write_jsonl(tmp_path / "l.jsonl", items[:1] + items[-2:-1]))


# ---- streaming ----------------------------------------------------------------------------------

def test_array_reader_streams_a_large_file(tmp_path, monkeypatch):
    path = write_json(tmp_path / "big.json", [raw_record(i) for i in range(1500)], indent=1)
    size = path.stat().st_size
    assert size > 5_000_000
    handles = []
    real_open = data_io._open_text

    def spying_open(*args, **kwargs):
        handles.append(real_open(*args, **kwargs))
        return handles[-1]

    monkeypatch.setattr(data_io, "_open_text", spying_open)
    records = iter_records(path)
    first = next(records)
    assert first.id == "unified_chip2/69960"
    position = handles[-1].buffer.tell()  # bytes taken from the file so far
    assert position < size / 20, f"read {position} of {size} bytes for one record"
    assert next(records).id == "unified_chip2/69961"
    assert sum(1 for _ in records) == 1498
    assert handles[-1].closed


@pytest.mark.parametrize("chunk", [1, 2, 7, 64, 1000])
def test_records_spanning_chunk_boundaries(tmp_path, monkeypatch, chunk, raws):
    monkeypatch.setattr(data_io, "CHUNK_SIZE", chunk)
    compact = write_json(tmp_path / "c.json", raws)
    pretty = tmp_path / "p.json"
    pretty.write_text("\ufeff \n\t[\n" + ",\n\n".join(json.dumps(r, indent=3) for r in raws) + "\n  ]  \n\n")
    lines = write_jsonl(tmp_path / "l.jsonl", raws)
    expected = [MixRecord.model_validate(r) for r in raws]
    assert read_records(compact) == read_records(pretty) == read_records(lines) == expected
    nested = write_json(tmp_path / "n.json", [{"a": [1, {"b": "x" * 50}, 2.5e-3], "c": "🎉" * 9}, {"d": None}])
    assert list(iter_objects(nested)) == json.loads(nested.read_text())
    scalars = tmp_path / "s.json"  # a number cut by a chunk boundary ("1.5e" | "-07") is read whole
    scalars.write_text('[1.5e-07, -123456789, {"a": 1}, true]')
    stats = ReadStats()
    assert list(iter_objects(scalars, skip_bad=True, stats=stats)) == [{"a": 1}]
    assert stats.skipped == 3 and "found float" in stats.errors[0] and "found bool" in stats.errors[2]


# ---- resumable writing --------------------------------------------------------------------------

def test_record_writer_resumes_after_a_truncated_last_line(tmp_path, raws):
    path = tmp_path / "out.jsonl"
    assert existing_ids(path) == set()
    records = [MixRecord.model_validate(r) for r in raws]
    with RecordWriter(path) as out:
        for record in records[:3]:
            out.write(record)
    full = json.dumps(records[3].to_dict(), ensure_ascii=False)
    with open(path, "a", encoding="utf-8") as fh:  # a killed run: half a line, no newline
        fh.write(full[: len(full) // 2])
    done = RecordWriter.existing_ids(path)
    assert done == {r.id for r in records[:3]}
    with RecordWriter(path) as out:
        for record in records:
            if record.id not in done:
                out.write(record)
        assert out.written == 5
    assert read_records(path) == records
    assert path.read_text(encoding="utf-8").endswith("\n")


def test_record_writer_keeps_a_whole_last_line_without_newline(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text('{"id": "a"}\n{"id": "b"}', encoding="utf-8")
    assert existing_ids(path) == {"a", "b"}
    with RecordWriter(path) as out:
        out.write({"id": "c"})
    assert path.read_text() == '{"id": "a"}\n{"id": "b"}\n{"id": "c"}\n'
    with pytest.raises(InvalidInputError, match=".gz"):
        RecordWriter(tmp_path / "x.jsonl.gz")
    path.write_text('{"id": "a"}\n{"id": \n{"id": "c"}\n', encoding="utf-8")
    with pytest.raises(DataFormatError, match="line 2"):
        existing_ids(path)  # only a last line may be partial


# ---- conversions --------------------------------------------------------------------------------

def test_plain_round_trip(tmp_path):
    items = [
        {"instruction": "Sum: ", "input": "2+2", "output": "4",
         "candidates": [{"model": "a", "text": "4"}, {"model": "b", "text": "四 🧮"}]},
        {"id": "mine/1", "instruction": "Hi", "input": "", "candidates": [{"model": "a", "text": "Hello"}]},
    ]
    records = list(from_plain(items))
    assert [r.id for r in records] == ["plain/0", "mine/1"]
    assert [to_plain(r) for r in records] == [{"id": "plain/0", **items[0]}, items[1]]
    assert list(from_plain(to_plain(r) for r in records)) == records
    with pytest.raises(InvalidInputError, match=r"plain item 1 is invalid: candidates\.0\.text"):
        list(from_plain([items[0], {"candidates": [{"model": "a"}]}]))
    src = write_jsonl(tmp_path / "plain.jsonl", items)
    assert convert_file(src, tmp_path / "mix.json", src_format="plain", dst_format="mixinstruct") == 2
    assert read_records(tmp_path / "mix.json") == records
    assert convert_file(tmp_path / "mix.json", tmp_path / "back.jsonl", src_format="mixinstruct", dst_format="plain") == 2
    assert [json.loads(x) for x in (tmp_path / "back.jsonl").read_text().splitlines()] == [to_plain(r) for r in records]


def test_pairs_to_mixinstruct_to_pairs(tmp_path):
    pairs = [  # a complete, consistent tournament per prompt: the round trip gives it back exactly
        {"prompt": "Q1 ¿qué?", "chosen": "best", "rejected": "mid"},
        {"prompt": "Q2 🌍", "chosen": "yes", "rejected": "no"},
        {"prompt": "Q1 ¿qué?", "chosen": "mid", "rejected": "worst"},
        {"prompt": "Q1 ¿qué?", "chosen": "best", "rejected": "worst"},
    ]
    records = list(from_preference_pairs(pairs))
    assert [r.id for r in records] == ["pairs/0", "pairs/1"]
    q1 = records[0]
    assert (q1.instruction, q1.input, q1.models) == ("Q1 ¿qué?", "", ["cand0", "cand1", "cand2"])
    assert [c.text for c in q1.candidates] == ["best", "mid", "worst"]
    assert q1.cmp_results == {"cand0,cand1": "A is better", "cand1,cand2": "A is better",
                              "cand0,cand2": "A is better"}
    back = list(to_preference_pairs(records, "cmp_results"))

    def key(pair):
        return pair["prompt"], pair["chosen"], pair["rejected"]

    assert sorted(map(key, back)) == sorted(map(key, pairs))
    assert back[0] == {"prompt": "Q1 ¿qué?", "chosen": "best", "rejected": "mid", "id": "pairs/0",
                       "chosen_model": "cand0", "rejected_model": "cand1"}
    src = write_jsonl(tmp_path / "pairs.jsonl", pairs)
    assert convert_file(src, tmp_path / "mix.jsonl", src_format="pairs", dst_format="mixinstruct") == 2
    n = convert_file(tmp_path / "mix.jsonl", tmp_path / "again.json.gz", src_format="mixinstruct",
                     dst_format="pairs", signal="cmp_results")
    assert n == 4
    with gzip.open(tmp_path / "again.json.gz", "rt", encoding="utf-8") as fh:
        assert sorted(map(key, json.load(fh))) == sorted(map(key, pairs))
    with pytest.raises(InvalidInputError, match="same text"):
        list(from_preference_pairs([{"prompt": "p", "chosen": "x", "rejected": "x"}]))


def test_to_preference_pairs_by_score_skips_ties_and_records_without_the_signal():
    record = MixRecord(id="r", instruction="I", input="J", candidates=[
        {"model": "a", "text": "ta", "scores": {"rougeL": 0.2}},
        {"model": "b", "text": "tb", "scores": {"rougeL": 0.5}},
        {"model": "c", "text": "tc", "scores": {"rougeL": 0.2}},
    ])
    lacking = MixRecord(id="s", candidates=[{"model": "a", "text": "x", "scores": {"rougeL": 1}},
                                            {"model": "b", "text": "y"}])
    pairs = list(to_preference_pairs([record, lacking], "rougeL"))
    assert [(p["chosen_model"], p["rejected_model"]) for p in pairs] == [("b", "a"), ("b", "c")]
    assert pairs[0]["prompt"] == "IJ" and pairs[0]["chosen"] == "tb" and pairs[0]["id"] == "r"
    with pytest.raises(InvalidInputError):
        to_preference_pairs([record], "rougeL+")


def test_convert_file_checks_its_arguments(tmp_path):
    src = write_jsonl(tmp_path / "m.jsonl", [raw_record(0)])
    with pytest.raises(InvalidInputError, match="unknown src_format"):
        convert_file(src, tmp_path / "o.json", src_format="csv", dst_format="plain")
    with pytest.raises(InvalidInputError, match="signal"):
        convert_file(src, tmp_path / "o.json", src_format="mixinstruct", dst_format="pairs")
    with pytest.raises(InvalidInputError, match="signal"):
        convert_file(src, tmp_path / "o.json", src_format="mixinstruct", dst_format="plain", signal="bleu")
    n = convert_file(src, tmp_path / "o.jsonl", src_format="mixinstruct", dst_format="pairs", signal="rougeL+bleu")
    assert n == len((tmp_path / "o.jsonl").read_text().splitlines()) > 0


# ---- signals ------------------------------------------------------------------------------------

def _judged() -> MixRecord:
    return MixRecord(id="g", candidates=[{"model": m, "text": m, "scores": {"bleu": b, "rougeL": r}}
                                         for m, b, r in (("a", 0.1, 0.5), ("b", 0.3, 0.1), ("c", 0.2, float("nan")))],
                     cmp_results={"a,b": "A is better", "b,c": "Same good", "c,a": "B is better",
                                  "a,zz": "B is better"})


def test_cmp_matrix_and_scores_worked_by_hand():
    # "a,b" A is better: M[a,b] += 1, M[b,a] -= 1
    # "b,c" Same good:   M[b,c] += .5, M[c,b] += .5
    # "c,a" B is better: M[c,a] -= 1, M[a,c] += 1
    # "a,zz": zz is no candidate -> ignored
    #       M = [[ 0, 1,  1 ],     M - M.T = [[ 0, 2, 2],   row sums: a = 4, b = -2, c = -2
    #            [-1, 0, .5 ],                [-2, 0, 0],
    #            [-1, .5, 0 ]]                [-2, 0, 0]]
    models, matrix = cmp_matrix(_judged())
    assert models == ["a", "b", "c"]
    np.testing.assert_array_equal(matrix, [[0, 1, 1], [-1, 0, 0.5], [-1, 0.5, 0]])
    assert cmp_scores(_judged()) == {"a": 4.0, "b": -2.0, "c": -2.0}
    same_bad = MixRecord(id="s", candidates=[{"model": "a", "text": "x"}, {"model": "b", "text": "y"}],
                         cmp_results={"a,b": "Same bad"})
    np.testing.assert_array_equal(cmp_matrix(same_bad)[1], [[0, -0.5], [-0.5, 0]])
    assert cmp_scores(same_bad) == {"a": 0.0, "b": 0.0}


def test_cmp_scores_is_none_without_verdicts_on_the_candidates():
    record = _judged()
    assert cmp_scores(record.model_copy(update={"cmp_results": None})) is None
    assert cmp_scores(record.model_copy(update={"cmp_results": {}})) is None
    assert cmp_scores(record.model_copy(update={"cmp_results": {"x,y": "A is better"}})) is None
    assert cmp_matrix(record.model_copy(update={"cmp_results": None}))[1].shape == (3, 3)


def test_candidate_scores_for_a_key_a_sum_cmp_results_and_a_missing_signal():
    record = _judged()
    assert candidate_scores(record, "bleu") == [0.1, 0.3, 0.2]
    assert candidate_scores(record, "cmp_results") == [4.0, -2.0, -2.0]
    assert candidate_scores(record, "rougeL") is None  # NaN counts as missing
    assert candidate_scores(record, "bertscore") is None
    record.candidates[2].scores["rougeL"] = 0.0
    total = candidate_scores(record, " rougeL + bleu ")
    assert total == pytest.approx([0.6, 0.4, 0.2]) and not any(math.isnan(x) for x in total)
    assert candidate_scores(MixRecord(id="e"), "bleu") == []
    for bad in ("", "  ", "bleu+", "+bleu", "bleu++rougeL", "cmp_results+bleu"):
        with pytest.raises(InvalidInputError):
            candidate_scores(record, bad)
    assert parse_signal("rougeL+bleu") == ("rougeL", "bleu")


def test_real_shaped_file_signals_end_to_end(tmp_path, raws):
    records = read_records(write_json(tmp_path / "t.json", raws))
    judged = [r for r in records if candidate_scores(r, "cmp_results") is not None]
    assert len(judged) == 6  # records 3 and 7 have no cmp_results
    scores = cmp_scores(judged[0])
    # a>b (A is better); c=a (Same good, no effect); e>d (B is better); f,g Same bad (no effect)
    assert (scores[MODELS[0]], scores[MODELS[1]], scores[MODELS[3]], scores[MODELS[4]]) == (2.0, -2.0, -2.0, 2.0)
    assert sum(scores.values()) == 0.0
