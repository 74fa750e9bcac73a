"""The miniature task generator: deterministic, stratified, and its labels agree with its verifiers."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import pytest

from blender_serve.errors import InvalidInputError
from blender_serve.eval.verifiers import check, validate_spec, verify
from blender_serve.miniature.tasks import FAMILIES, SPLITS, make_tasks, split_tasks, write_splits

N = 600


@pytest.fixture(scope="module")
def tasks():
    return make_tasks(N, seed=0)


def test_records_have_the_mixinstruct_shape(tasks):
    assert len(tasks) == N
    for t in tasks:
        assert set(t) - {"output"} == {"id", "instruction", "input", "verifiers", "task"}
        assert t["input"] == "" and t["instruction"].strip() and t["task"] in FAMILIES
        assert 1 <= len(t["verifiers"]) <= 2


def test_families_are_balanced(tasks):
    counts = Counter(t["task"] for t in tasks)
    assert set(counts) == set(FAMILIES)
    assert max(counts.values()) - min(counts.values()) <= 1


def test_ids_are_unique_and_instructions_mostly_distinct(tasks):
    assert len({t["id"] for t in tasks}) == N
    assert len({t["instruction"] for t in tasks}) >= 0.95 * N


def test_same_seed_same_tasks_other_seed_other_tasks():
    assert make_tasks(100, seed=3) == make_tasks(100, seed=3)
    assert make_tasks(100, seed=3) != make_tasks(100, seed=4)
    assert make_tasks(50, seed=3) == make_tasks(100, seed=3)[:50]  # a prefix is stable too


def test_every_verifier_spec_is_valid(tasks):
    for t in tasks:
        for spec in t["verifiers"]:
            validate_spec(spec)
            assert check("", spec) is False  # runs without error; empty answers never pass
        json.dumps(t["verifiers"])  # plain JSON


def test_reference_outputs_pass_their_own_verifiers(tasks):
    with_output = [t for t in tasks if "output" in t]
    assert {t["task"] for t in with_output} == {"arithmetic", "capital", "opposite", "plural", "color"}
    for t in with_output:
        assert verify(t["output"], t["verifiers"])["verify_all"] == 1.0, t


def test_format_tasks_carry_no_invented_reference(tasks):
    exact = {"arithmetic", "capital", "opposite", "plural", "color"}
    assert all(("output" in t) == (t["task"] in exact) for t in tasks)


def test_arithmetic_references_are_right(tasks):
    for t in (t for t in tasks if t["task"] == "arithmetic"):
        assert t["output"].lstrip("-").isdigit()
        wrong = str(int(t["output"]) + 1)
        assert verify(wrong, t["verifiers"])["verify_all"] == 0.0


def test_combos_hold_two_different_constraints(tasks):
    for t in (t for t in tasks if t["task"] == "combo"):
        kinds = [s["kind"] for s in t["verifiers"]]
        assert len(kinds) == 2 and len(set(kinds)) == 2
        assert set(kinds) != {"lowercase", "uppercase"}


def test_split_sizes_and_stratification(tasks):
    splits = split_tasks(tasks)
    assert list(splits) == list(SPLITS)
    sizes = {s: len(rows) for s, rows in splits.items()}
    assert sum(sizes.values()) == N
    assert abs(sizes["train"] - 0.6 * N) <= len(FAMILIES)
    assert abs(sizes["val"] - 0.15 * N) <= len(FAMILIES)
    assert abs(sizes["test"] - 0.25 * N) <= len(FAMILIES)
    ids = [t["id"] for rows in splits.values() for t in rows]
    assert sorted(ids) == sorted(t["id"] for t in tasks)  # a partition: no task lost or doubled
    for family in FAMILIES:
        per_split = {s: sum(t["task"] == family for t in rows) for s, rows in splits.items()}
        total = sum(per_split.values())
        for s, share in zip(SPLITS, (0.6, 0.15, 0.25)):
            assert abs(per_split[s] - share * total) < 1, (family, per_split)


def test_split_is_seeded(tasks):
    assert split_tasks(tasks, seed=1) == split_tasks(tasks, seed=1)
    assert split_tasks(tasks, seed=1) != split_tasks(tasks, seed=2)


@pytest.mark.parametrize("fractions", [(0.5, 0.5), (0.7, 0.2, 0.2), (1.2, -0.1, -0.1)])
def test_bad_fractions_raise(tasks, fractions):
    with pytest.raises(InvalidInputError):
        split_tasks(tasks, fractions)


def test_duplicate_ids_raise(tasks):
    with pytest.raises(InvalidInputError):
        split_tasks([tasks[0], tasks[0]])


@pytest.mark.parametrize("n", [-1, 2.5, True])
def test_bad_n_raises(n):
    with pytest.raises(InvalidInputError):
        make_tasks(n)


def test_written_files_are_byte_identical_for_a_seed(tmp_path):
    write_splits(tmp_path / "a", 200, seed=7)
    write_splits(tmp_path / "b", 200, seed=7)
    for split in SPLITS:
        a = (tmp_path / "a" / f"tasks_{split}.jsonl").read_bytes()
        assert a == (tmp_path / "b" / f"tasks_{split}.jsonl").read_bytes()
        rows = [json.loads(line) for line in a.decode("utf-8").splitlines()]
        assert rows and all(r["id"].startswith("mini/") for r in rows)


def test_module_cli_writes_files_and_prints_counts(tmp_path):
    out = subprocess.run([sys.executable, "-m", "blender_serve.miniature.tasks", "--n", "64", "--seed", "1",
                          "--out", str(tmp_path)], capture_output=True, text=True, check=True, timeout=120)
    assert "total" in out.stdout and "arithmetic" in out.stdout
    lines = sum(len((tmp_path / f"tasks_{s}.jsonl").read_text(encoding="utf-8").splitlines()) for s in SPLITS)
    assert lines == 64


def test_importing_the_modules_stays_pure_python():
    code = ("import sys, blender_serve.miniature.tasks, blender_serve.eval.verifiers; "
            "print(' '.join(m for m in ('ray', 'fastapi', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == ""
