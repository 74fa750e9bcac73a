"""Programmatic verifiers: does an answer follow a checkable instruction, or give the exact answer?

A verifier spec is a JSON object ``{"kind": "<name>", ...params}``; :data:`VERIFIERS` maps each kind
to a :class:`Verifier` (a one-line description, its params, one pure check function).
:func:`check` runs one spec on one answer, :func:`verify` a list of specs and returns the share that
passed. Pure Python, no model: these give honest labels for the miniature reproduction.

Rules shared by every kind (forgiving about layout, honest about content):

* the answer is stripped of surrounding whitespace first; an empty answer fails every kind (an
  empty reply follows no instruction, not even "at most 10 words" or "no commas");
* a *word* is a run of letters, digits and apostrophes holding at least one letter or digit
  (:data:`WORD_RE`): ``"don't"`` is one word, ``"well-known"`` two, ``"3.5"`` two;
* keyword and text-answer matches are case-insensitive and on whole words: ``"cat"`` is not found
  in ``"category"``; a phrase matches across any run of whitespace.

Example:
    >>> verify("paris is lovely", [{"kind": "lowercase"}, {"kind": "max_words", "n": 2}])
    {'verify': 0.5, 'verify_all': 0.0}
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from blender_serve.errors import InvalidInputError

__all__ = ["VERIFIERS", "WORD_RE", "Param", "Verifier", "check", "validate_spec", "verify", "words"]

WORD_RE = re.compile(r"['\u2019]*[^\W_](?:[^\W_]|['\u2019])*")
_QUOTES = "\"'\u201c\u201d\u2018\u2019`"
_BULLET_RE = re.compile(r"^\s*[-*] +\S")
_NUMBERED_RE = re.compile(r"^\s*(\d+)[.)] +\S")
# 1,000 / 1,234.5 (thousands groups of exactly three digits) before plain 1000 / 3.25 / -4
_NUMBER_RE = re.compile(r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")
_FENCE_RE = re.compile(r"^```[A-Za-z]*[ \t]*\n?(.*?)\n?```$", re.DOTALL)
_TRAILING_PUNCT = ".!?"


def words(text: str) -> list[str]:
    """The words of ``text`` (see :data:`WORD_RE`): ``words("It's 3 o'clock!") == ["It's", "3", "o'clock"]``."""
    return WORD_RE.findall(text)


def _phrase_re(phrase: str) -> re.Pattern[str]:
    """Case-insensitive whole-word match of a word or phrase, any whitespace between its words."""
    body = r"\s+".join(re.escape(part) for part in phrase.split())
    return re.compile(rf"(?<![^\W_]){body}(?![^\W_])", re.IGNORECASE)


def _has_phrase(text: str, phrase: str) -> bool:
    return _phrase_re(phrase).search(text) is not None


# --- check functions: (stripped non-empty text, **params) -> bool ---------------------------------

def _lowercase(text: str) -> bool:
    return any(c.isalpha() for c in text) and not any(c.isupper() for c in text)


def _uppercase(text: str) -> bool:
    return any(c.isalpha() for c in text) and not any(c.islower() for c in text)


def _max_words(text: str, n: int) -> bool:
    return 1 <= len(words(text)) <= n


def _min_words(text: str, n: int) -> bool:
    return len(words(text)) >= n


def _word_count_between(text: str, lo: int, hi: int) -> bool:
    return lo <= len(words(text)) <= hi


def _include_keywords(text: str, words: Sequence[str]) -> bool:
    return all(_has_phrase(text, w) for w in words)


def _exclude_words(text: str, words: Sequence[str]) -> bool:
    return not any(_has_phrase(text, w) for w in words)


def _starts_with(text: str, prefix: str) -> bool:
    body = text.lstrip(_QUOTES + " \t\n*")
    if not body.lower().startswith(prefix.lower()):
        return False
    # "Yes" is not the start of "Yesterday": a prefix ending in a letter/digit ends a word
    rest = body[len(prefix):]
    return not (prefix[-1:].isalnum() and rest[:1].isalnum())


def _ends_with(text: str, suffix: str) -> bool:
    body = text.rstrip(_QUOTES + " \t\n*")
    if suffix[-1:] not in _TRAILING_PUNCT:
        body = body.rstrip(_TRAILING_PUNCT).rstrip(_QUOTES + " \t\n*")
    if not body.lower().endswith(suffix.lower()):
        return False
    before = body[: len(body) - len(suffix)]
    return not (suffix[:1].isalnum() and before[-1:].isalnum())


def _no_commas(text: str) -> bool:
    return "," not in text and "\uff0c" not in text


def _bullet_points(text: str, n: int) -> bool:
    return sum(1 for line in text.splitlines() if _BULLET_RE.match(line)) == n


def _numbered_list(text: str, n: int) -> bool:
    numbers = [int(m.group(1)) for m in map(_NUMBERED_RE.match, text.splitlines()) if m]
    return numbers == list(range(1, n + 1))


def _json_list(text: str, n: int | None = None, strings: bool = False) -> bool:
    fenced = _FENCE_RE.match(text)
    try:
        value = json.loads(fenced.group(1) if fenced else text)
    except ValueError:
        return False
    if not isinstance(value, list) or (n is not None and len(value) != n):
        return False
    return not strings or all(isinstance(v, str) and v.strip() for v in value)


def _to_number(token: str) -> float:
    return float(token.replace(",", ""))


def _exact_answer(text: str, answers: Sequence[Any], mode: str = "text") -> bool:
    if mode == "number":
        match = _NUMBER_RE.search(text)
        if match is None:
            return False
        got = _to_number(match.group(0))
        return any(math.isclose(got, _to_number(str(a)), rel_tol=1e-9, abs_tol=1e-9) for a in answers)
    return any(_has_phrase(text, str(a)) for a in answers)


def _one_word(text: str) -> bool:
    core = text.strip(_QUOTES + " \t\n.,;:!?*()[]")
    return re.fullmatch(r"[^\W_]+(?:['\u2019-][^\W_]+)*", core) is not None


def _quoted(text: str) -> bool:
    return (len(text) >= 2 and text[0] in "\"\u201c" and text[-1] in "\"\u201d"
            and bool(text[1:-1].strip()))


# --- params and the registry ----------------------------------------------------------------------

def _is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _is_positive(v: Any) -> bool:
    return _is_count(v) and v >= 1


def _is_word_list(v: Any) -> bool:
    return (isinstance(v, (list, tuple)) and len(v) > 0
            and all(isinstance(w, str) and w.strip() for w in v))


def _is_text(v: Any) -> bool:
    return isinstance(v, str) and bool(v.strip())


def _is_answer_list(v: Any) -> bool:
    return (isinstance(v, (list, tuple)) and len(v) > 0
            and all((isinstance(a, (int, float)) and not isinstance(a, bool)) or _is_text(a) for a in v))


@dataclass(frozen=True)
class Param:
    """One parameter of a verifier: what it means, how to test a value, whether it may be left out."""

    description: str
    valid: Callable[[Any], bool]
    required: bool = True


@dataclass(frozen=True)
class Verifier:
    """A named check: ``fn(stripped_text, **params) -> bool``, with a one-line description."""

    name: str
    description: str
    fn: Callable[..., bool]
    params: Mapping[str, Param] = field(default_factory=dict)

    def signature(self) -> str:
        """``"name {p1, p2?}"``: the kind and its params, ``?`` marking optional ones."""
        ps = ", ".join(p + ("" if spec.required else "?") for p, spec in self.params.items())
        return f"{self.name} {{{ps}}}" if ps else self.name


_N = Param("a count (int >= 1)", _is_positive)
_WORDS = Param("a non-empty list of words or phrases", _is_word_list)

VERIFIERS: dict[str, Verifier] = {v.name: v for v in (
    Verifier("lowercase", "no uppercase letter, and at least one letter", _lowercase),
    Verifier("uppercase", "no lowercase letter, and at least one letter", _uppercase),
    Verifier("max_words", "between 1 and n words", _max_words, {"n": _N}),
    Verifier("min_words", "at least n words", _min_words, {"n": _N}),
    Verifier("word_count_between", "between lo and hi words, both included", _word_count_between,
             {"lo": Param("fewest words (int >= 0)", _is_count), "hi": Param("most words (int >= lo)", _is_positive)}),
    Verifier("include_keywords", "every word/phrase appears (case-insensitive, whole words)",
             _include_keywords, {"words": _WORDS}),
    Verifier("exclude_words", "none of the words/phrases appears (case-insensitive, whole words)",
             _exclude_words, {"words": _WORDS}),
    Verifier("starts_with", "starts with prefix (case-insensitive; leading quotes, '*' and spaces "
             "ignored; a prefix ending in a letter must end a word there)", _starts_with,
             {"prefix": Param("the required opening text", _is_text)}),
    Verifier("ends_with", "ends with suffix (case-insensitive; trailing quotes, '*' and spaces ignored, "
             "and final .!? too unless the suffix itself ends in one; whole words)", _ends_with,
             {"suffix": Param("the required closing text", _is_text)}),
    Verifier("no_commas", "no comma anywhere", _no_commas),
    Verifier("bullet_points", "exactly n lines starting with '- ' or '* ' (after leading spaces)",
             _bullet_points, {"n": _N}),
    Verifier("numbered_list", "its numbered lines ('1.' or '1)' then text) are exactly 1..n in order",
             _numbered_list, {"n": _N}),
    Verifier("json_list", "the whole answer (or one ```json fenced block that is the whole answer) "
             "is a JSON list, of n items if n is given, all non-empty strings if strings is true",
             _json_list, {"n": Param("required length (int >= 1)", _is_positive, required=False),
                          "strings": Param("items must be non-empty strings (bool)",
                                           lambda v: isinstance(v, bool), required=False)}),
    Verifier("exact_answer", "number: the first number in the answer (1,000 and 2.5 allowed) equals "
             "one of answers; text: one of answers appears as a whole word/phrase, case-insensitive",
             _exact_answer, {"answers": Param("accepted answers (non-empty list)", _is_answer_list),
                             "mode": Param("'number' or 'text' (default 'text')",
                                           lambda v: v in ("number", "text"), required=False)}),
    Verifier("one_word", "exactly one word once surrounding punctuation and quotes are stripped "
             "(inner hyphens and apostrophes allowed)", _one_word),
    Verifier("quoted", "wrapped in double quotes (straight or curly) with something inside", _quoted),
)}


def _valid_kinds() -> str:
    return "; ".join(v.signature() for v in VERIFIERS.values())


def validate_spec(spec: Any) -> tuple[Verifier, dict[str, Any]]:
    """The verifier and params of ``spec``, or :class:`InvalidInputError` saying what is valid.

    Example:
        >>> validate_spec({"kind": "max_words", "n": 5})[1]
        {'n': 5}
    """
    if not isinstance(spec, Mapping) or "kind" not in spec:
        raise InvalidInputError(f"a verifier spec must be an object with a 'kind', got {spec!r}; "
                                f"valid kinds: {_valid_kinds()}")
    kind = spec["kind"]
    verifier = VERIFIERS.get(kind) if isinstance(kind, str) else None
    if verifier is None:
        raise InvalidInputError(f"unknown verifier kind {kind!r}; valid kinds: {_valid_kinds()}")
    params = {k: v for k, v in spec.items() if k != "kind"}
    problems = [f"unknown param {k!r}" for k in params if k not in verifier.params]
    for name, param in verifier.params.items():
        if name not in params:
            if param.required:
                problems.append(f"missing param {name!r} ({param.description})")
        elif not param.valid(params[name]):
            problems.append(f"param {name!r}={params[name]!r} is not {param.description}")
    if kind == "word_count_between" and not problems and params["lo"] > params["hi"]:
        problems.append(f"lo={params['lo']} is greater than hi={params['hi']}")
    if problems:
        raise InvalidInputError(f"verifier {kind!r} is invalid: {'; '.join(problems)}; "
                                f"expected {verifier.signature()}")
    return verifier, params


def check(text: str, spec: Mapping[str, Any]) -> bool:
    """Whether ``text`` passes the verifier ``spec`` (raises InvalidInputError on a bad spec).

    Example:
        >>> check(" 1,000 ", {"kind": "exact_answer", "answers": [1000], "mode": "number"})
        True
    """
    verifier, params = validate_spec(spec)
    if not isinstance(text, str):
        raise InvalidInputError(f"verifier {verifier.name!r} needs a string answer, got {type(text).__name__}")
    body = text.strip()
    return bool(body) and bool(verifier.fn(body, **params))


def verify(text: str, specs: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """``{"verify": share of specs passed (0..1), "verify_all": 1.0 if all passed else 0.0}``.

    Raises InvalidInputError when ``specs`` is empty (a share of nothing means nothing) or holds a
    bad spec.

    Example:
        >>> verify("42", [{"kind": "exact_answer", "answers": [42], "mode": "number"}])
        {'verify': 1.0, 'verify_all': 1.0}
    """
    if isinstance(specs, Mapping) or not specs:
        raise InvalidInputError("verify needs a non-empty list of verifier specs")
    passed = [check(text, spec) for spec in specs]
    share = sum(passed) / len(passed)
    return {"verify": share, "verify_all": 1.0 if all(passed) else 0.0}
