"""Programmatic verifiers: every kind passes and fails where its documented rule says."""

from __future__ import annotations

import pytest

from blender_serve.errors import InvalidInputError
from blender_serve.eval.verifiers import VERIFIERS, check, validate_spec, verify, words

NUM = {"kind": "exact_answer", "mode": "number"}
TXT = {"kind": "exact_answer", "mode": "text"}

# (spec, answer, expected)
CASES = [
    ({"kind": "lowercase"}, "paris is lovely in spring.", True),
    ({"kind": "lowercase"}, "Paris is lovely.", False),
    ({"kind": "lowercase"}, "123 !!", False),  # no letter at all
    ({"kind": "uppercase"}, "SAVE THE BEES, 2024!", True),
    ({"kind": "uppercase"}, "SAVE the bees", False),
    ({"kind": "max_words", "n": 3}, "  Don't stop now.  ", True),
    ({"kind": "max_words", "n": 3}, "well-known facts only", False),  # well-known is two words
    ({"kind": "min_words", "n": 3}, "one two three", True),
    ({"kind": "min_words", "n": 3}, "one two", False),
    ({"kind": "word_count_between", "lo": 2, "hi": 3}, "a b", True),
    ({"kind": "word_count_between", "lo": 2, "hi": 3}, "a b c d", False),
    ({"kind": "include_keywords", "words": ["Ocean", "blue whale"]}, "The ocean holds the BLUE\nwhale.", True),
    ({"kind": "include_keywords", "words": ["cat"]}, "A category of things.", False),
    ({"kind": "exclude_words", "words": ["water"]}, "Waterfalls are tall.", True),
    ({"kind": "exclude_words", "words": ["water"]}, "It is mostly Water.", False),
    ({"kind": "starts_with", "prefix": "Today"}, ' "today we learn.', True),
    ({"kind": "starts_with", "prefix": "Yes"}, "Yesterday was fine.", False),
    ({"kind": "starts_with", "prefix": "Today"}, "On Today we", False),
    ({"kind": "ends_with", "suffix": "the end"}, "And that was The End.\n  ", True),
    ({"kind": "ends_with", "suffix": "the end"}, 'so it goes, the end!"', True),
    ({"kind": "ends_with", "suffix": "the end"}, "the end is near", False),
    ({"kind": "ends_with", "suffix": "end"}, "we must defend", False),  # whole words only
    ({"kind": "ends_with", "suffix": "done!"}, "all done!", True),
    ({"kind": "ends_with", "suffix": "done!"}, "all done.", False),  # punctuation in the suffix counts
    ({"kind": "no_commas"}, "Coffee is warm and bitter.", True),
    ({"kind": "no_commas"}, "Coffee is warm, bitter.", False),
    ({"kind": "bullet_points", "n": 2}, "Tips:\n- sleep early\n  * drink water\n", True),
    ({"kind": "bullet_points", "n": 2}, "- one\n- two\n- three", False),
    ({"kind": "bullet_points", "n": 1}, "-no space\n- real bullet", True),
    ({"kind": "numbered_list", "n": 3}, "1. apple\n2) pear\n3. plum", True),
    ({"kind": "numbered_list", "n": 3}, "1. apple\n2. pear", False),
    ({"kind": "numbered_list", "n": 2}, "1. apple\n3. pear", False),
    ({"kind": "json_list", "n": 2}, '["apple", "pear"]', True),
    ({"kind": "json_list", "n": 2}, '```json\n["apple", "pear"]\n```', True),
    ({"kind": "json_list"}, '```\n[1, 2, 3]\n```', True),
    ({"kind": "json_list", "n": 2}, '["apple"]', False),
    ({"kind": "json_list"}, 'Sure! ["apple"]', False),
    ({"kind": "json_list"}, '{"a": 1}', False),
    ({"kind": "json_list", "strings": True}, '["a", 2]', False),
    ({**NUM, "answers": [42]}, "42", True),
    ({**NUM, "answers": ["1000"]}, "The answer is 1,000.", True),
    ({**NUM, "answers": [2.5]}, "2.50", True),
    ({**NUM, "answers": [-4]}, "-4", True),
    ({**NUM, "answers": [42]}, "17 + 25 = 42", False),  # the first number counts
    ({**NUM, "answers": [42]}, "forty-two", False),
    ({**TXT, "answers": ["Paris"]}, "The capital is paris.", True),
    ({**TXT, "answers": ["Mexico City"]}, "It is Mexico  City", True),
    ({**TXT, "answers": ["red"]}, "It is reddish.", False),
    ({"kind": "exact_answer", "answers": ["cold"]}, "cold", True),  # mode defaults to text
    ({"kind": "one_word"}, '"Blue."', True),
    ({"kind": "one_word"}, "well-known", True),
    ({"kind": "one_word"}, "Light blue", False),
    ({"kind": "quoted"}, ' "Bees matter." ', True),
    ({"kind": "quoted"}, "\u201cBees matter.\u201d", True),
    ({"kind": "quoted"}, '"Bees matter.', False),
    ({"kind": "quoted"}, '""', False),
]


@pytest.mark.parametrize("spec,text,expected", CASES)
def test_each_kind_follows_its_rule(spec, text, expected):
    assert check(text, spec) is expected


def test_every_kind_has_a_passing_and_a_failing_case():
    outcomes = {(spec["kind"], expected) for spec, _, expected in CASES}
    assert {(kind, flag) for kind in VERIFIERS for flag in (True, False)} <= outcomes


@pytest.mark.parametrize("kind", sorted(VERIFIERS))
def test_empty_answer_fails_every_kind(kind):
    spec = {"kind": kind, **_minimal_params(kind)}
    assert check("", spec) is False
    assert check(" \n\t", spec) is False


def _minimal_params(kind: str) -> dict:
    return {"n": {"n": 1}, "words": {"words": ["x"]}, "prefix": {"prefix": "x"}, "suffix": {"suffix": "x"},
            "answers": {"answers": ["x"]}, "lo": {"lo": 0, "hi": 1}}.get(
        next((p for p in VERIFIERS[kind].params if VERIFIERS[kind].params[p].required), ""), {})


def test_words_are_letters_digits_and_apostrophes():
    assert words("It's 3 o'clock -- well-known, 3.5!") == ["It's", "3", "o'clock", "well", "known", "3", "5"]


@pytest.mark.parametrize("spec,needle", [
    ({"kind": "nope"}, "unknown verifier kind 'nope'"),
    ({"kind": "nope"}, "max_words {n}"),  # the message lists the valid kinds with their params
    ({"n": 3}, "must be an object with a 'kind'"),
    ("lowercase", "must be an object with a 'kind'"),
    ({"kind": "max_words"}, "missing param 'n'"),
    ({"kind": "max_words", "n": "3"}, "param 'n'='3'"),
    ({"kind": "max_words", "n": True}, "param 'n'=True"),
    ({"kind": "lowercase", "strict": True}, "unknown param 'strict'"),
    ({"kind": "include_keywords", "words": []}, "param 'words'"),
    ({"kind": "exact_answer", "answers": [1], "mode": "regex"}, "param 'mode'"),
    ({"kind": "word_count_between", "lo": 5, "hi": 2}, "lo=5 is greater than hi=2"),
])
def test_bad_specs_raise_invalid_input_naming_kind_and_params(spec, needle):
    with pytest.raises(InvalidInputError) as err:
        check("text", spec)
    assert needle in str(err.value)


def test_bad_param_message_names_the_expected_signature():
    with pytest.raises(InvalidInputError) as err:
        validate_spec({"kind": "json_list", "n": 0})
    assert "json_list {n?, strings?}" in str(err.value)


def test_verify_returns_the_share_passed():
    specs = [{"kind": "lowercase"}, {"kind": "max_words", "n": 2}, {"kind": "no_commas"}, {"kind": "quoted"}]
    assert verify("paris is lovely", specs) == {"verify": 0.5, "verify_all": 0.0}
    assert verify("paris", specs[:3]) == {"verify": 1.0, "verify_all": 1.0}
    assert verify("", specs) == {"verify": 0.0, "verify_all": 0.0}


@pytest.mark.parametrize("specs", [[], {"kind": "lowercase"}])
def test_verify_needs_a_non_empty_list(specs):
    with pytest.raises(InvalidInputError):
        verify("x", specs)


def test_a_bad_spec_in_verify_raises_instead_of_counting_as_failed():
    with pytest.raises(InvalidInputError):
        verify("x", [{"kind": "lowercase"}, {"kind": "bogus"}])


def test_every_verifier_is_documented():
    for name, verifier in VERIFIERS.items():
        assert verifier.name == name and verifier.description and "\n" not in verifier.description
        assert all(p.description for p in verifier.params.values())
