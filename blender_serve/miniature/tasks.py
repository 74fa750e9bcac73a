"""Seeded, programmatically checkable tasks for the miniature LLM-Blender reproduction.

Every task is a MixInstruct-shaped record without candidates::

    {"id": "mini/0042", "instruction": "What is 17 + 25? Answer with the number only.", "input": "",
     "output": "42", "verifiers": [{"kind": "exact_answer", "answers": ["42"], "mode": "number"}],
     "task": "arithmetic"}

``output`` is the reference answer and is present only where one exists (arithmetic and facts);
format tasks have no single correct text and carry no invented one. Every task is answerable in
at most 40 words, so a tiny model's reply fits in ~48 new tokens. The families (:data:`FAMILIES`)
are dealt round-robin, so each holds ``n // len(FAMILIES)`` or one more tasks.

Same ``(n, seed)``: the same tasks, ids and split files, byte for byte.

Example:
    python -m blender_serve.miniature.tasks --n 600 --seed 0 --out /tmp/mini_tasks
"""

from __future__ import annotations

import argparse
import json
import random
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from blender_serve.errors import InvalidInputError

__all__ = ["FAMILIES", "SPLITS", "make_tasks", "split_tasks", "write_splits"]

SPLITS = ("train", "val", "test")
Spec = dict[str, Any]

# --- word lists ------------------------------------------------------------------------------------

CAPITALS = (
    ("France", ("Paris",)), ("Germany", ("Berlin",)), ("Italy", ("Rome",)), ("Spain", ("Madrid",)),
    ("Portugal", ("Lisbon",)), ("the United Kingdom", ("London",)), ("Ireland", ("Dublin",)),
    ("Japan", ("Tokyo",)), ("China", ("Beijing",)), ("India", ("New Delhi", "Delhi")), ("Russia", ("Moscow",)),
    ("Egypt", ("Cairo",)), ("Kenya", ("Nairobi",)), ("Greece", ("Athens",)), ("Norway", ("Oslo",)),
    ("Sweden", ("Stockholm",)), ("Finland", ("Helsinki",)), ("Denmark", ("Copenhagen",)),
    ("Poland", ("Warsaw",)), ("Austria", ("Vienna",)), ("Hungary", ("Budapest",)), ("Belgium", ("Brussels",)),
    ("the Netherlands", ("Amsterdam",)), ("Canada", ("Ottawa",)), ("Mexico", ("Mexico City",)),
    ("Argentina", ("Buenos Aires",)), ("Peru", ("Lima",)), ("Chile", ("Santiago",)), ("Cuba", ("Havana",)),
    ("Thailand", ("Bangkok",)), ("South Korea", ("Seoul",)), ("Indonesia", ("Jakarta",)),
    ("Iran", ("Tehran",)), ("Iraq", ("Baghdad",)), ("Turkey", ("Ankara",)), ("Australia", ("Canberra",)),
    ("New Zealand", ("Wellington",)), ("the United States", ("Washington",)), ("Czechia", ("Prague",)),
    ("Vietnam", ("Hanoi",)), ("the Philippines", ("Manila",)), ("Ukraine", ("Kyiv", "Kiev")),
)
OPPOSITES = (
    ("hot", ("cold",)), ("big", ("small", "little")), ("fast", ("slow",)), ("happy", ("sad", "unhappy")),
    ("light", ("dark", "heavy")), ("tall", ("short",)), ("old", ("young", "new")), ("rich", ("poor",)),
    ("hard", ("soft", "easy")), ("wet", ("dry",)), ("early", ("late",)), ("full", ("empty",)),
    ("open", ("closed", "shut")), ("strong", ("weak",)), ("clean", ("dirty",)), ("loud", ("quiet", "soft")),
    ("up", ("down",)), ("thick", ("thin",)), ("wide", ("narrow",)), ("deep", ("shallow",)),
    ("cheap", ("expensive", "costly")), ("true", ("false",)), ("good", ("bad", "evil")), ("first", ("last",)),
    ("win", ("lose",)), ("day", ("night",)), ("inside", ("outside",)), ("push", ("pull",)),
    ("begin", ("end", "finish")), ("friend", ("enemy", "foe")), ("sweet", ("sour", "bitter", "salty")),
    ("near", ("far",)), ("high", ("low",)), ("above", ("below", "beneath", "under")), ("safe", ("dangerous", "unsafe")),
    ("asleep", ("awake",)), ("brave", ("cowardly", "scared", "afraid", "fearful")), ("smooth", ("rough",)),
    ("buy", ("sell",)), ("arrive", ("leave", "depart")),
)
# no nouns whose plural is the noun itself (sheep): an answer echoing the question would pass
PLURALS = (
    ("mouse", "mice"), ("child", "children"), ("foot", "feet"), ("tooth", "teeth"), ("man", "men"),
    ("woman", "women"), ("goose", "geese"), ("person", "people"), ("ox", "oxen"), ("wife", "wives"),
    ("leaf", "leaves"), ("knife", "knives"), ("wolf", "wolves"), ("life", "lives"), ("half", "halves"),
    ("box", "boxes"), ("fox", "foxes"), ("bus", "buses"), ("church", "churches"), ("dish", "dishes"),
    ("city", "cities"), ("baby", "babies"), ("party", "parties"), ("story", "stories"), ("day", "days"),
    ("toy", "toys"), ("potato", "potatoes"), ("tomato", "tomatoes"), ("hero", "heroes"), ("cat", "cats"),
    ("book", "books"), ("apple", "apples"), ("house", "houses"), ("dress", "dresses"), ("glass", "glasses"), ("watch", "watches"), ("berry", "berries"),
)
COLORS = (
    ("the sky on a clear day", ("blue",)), ("fresh grass", ("green",)), ("fresh snow", ("white",)),
    ("a ripe banana", ("yellow",)), ("coal", ("black",)), ("a ripe tomato", ("red",)),
    ("a carrot", ("orange",)), ("milk", ("white",)), ("a lemon", ("yellow",)), ("a ripe strawberry", ("red",)),
    ("a crow", ("black",)), ("a lime", ("green",)), ("an eggplant", ("purple",)), ("a flamingo", ("pink",)),
    ("a pumpkin", ("orange",)), ("a fire truck", ("red",)), ("an elephant", ("gray", "grey")),
    ("chocolate", ("brown",)), ("a polar bear's fur", ("white",)), ("a ripe cherry", ("red",)),
    ("a cucumber's skin", ("green",)), ("table salt", ("white",)), ("blood", ("red",)),
    ("a school bus in the United States", ("yellow",)), ("a frog", ("green",)), ("charcoal", ("black",)),
    ("a ripe plum", ("purple",)), ("the inside of a watermelon", ("red", "pink")), ("a pine tree's needles", ("green",)),
    ("a tree trunk", ("brown",)),
)
# (topic, a word central to it: the one an "avoid the word" task forbids)
TOPICS = (
    ("the ocean", "water"), ("coffee", "drink"), ("autumn", "leaves"), ("bicycles", "wheels"),
    ("the moon", "night"), ("libraries", "books"), ("volcanoes", "lava"), ("rain", "water"),
    ("cats", "pet"), ("dogs", "pet"), ("the city at night", "lights"), ("winter", "cold"),
    ("a forest", "trees"), ("music", "sound"), ("friendship", "friends"), ("bread", "bake"),
    ("the desert", "sand"), ("trains", "tracks"), ("gardens", "flowers"), ("mountains", "high"),
    ("the beach", "sand"), ("chess", "game"), ("honey bees", "honey"), ("summer", "hot"),
    ("a thunderstorm", "lightning"), ("pizza", "cheese"), ("the sun", "light"), ("birds", "fly"),
    ("snow", "white"), ("rivers", "water"), ("school", "learn"), ("the internet", "online"),
    ("breakfast", "morning"), ("soccer", "ball"), ("the stars", "sky"), ("tea", "drink"),
)
KEYWORDS = ("bright", "quiet", "journey", "simple", "warm", "gentle", "ancient", "golden", "calm",
            "wonder", "small", "together", "morning", "sharp", "home", "story", "green", "peace")
START_WORDS = ("Today", "Honestly", "Imagine", "Sometimes", "Yes", "Every", "Surprisingly", "Here",
               "Sure", "Once")
END_PHRASES = ("the end", "for now", "every day", "after all", "thank you", "in the end", "for sure",
               "at last")
CATEGORIES = ("fruits", "colors", "animals", "countries", "vegetables", "sports", "musical instruments",
              "planets", "flowers", "birds", "metals", "vehicles", "board games", "ocean animals",
              "kitchen tools", "weather words")
TIP_TOPICS = ("staying healthy", "saving money", "studying for an exam", "sleeping well",
              "learning a language", "keeping plants alive", "writing an email", "cooking rice",
              "staying focused", "running a first 5K", "packing for a trip", "drinking more water",
              "making friends", "keeping a desk tidy", "reading more books", "walking a dog")
ONE_WORD_QUESTIONS = (
    "What animal says 'moo'?", "What do bees make?", "What is frozen water called?",
    "What season comes after winter?", "What is the largest planet in our solar system?",
    "Which organ pumps blood?", "What do you call a baby dog?", "What gas do plants take in?",
    "Describe {topic} with a single adjective.", "What feeling does {topic} give you?",
    "Which word best sums up {topic}?", "What word comes to mind when you think of {topic}?",
)

# --- constraints: (rng, topic) -> (sentence for the prompt, verifier spec) -------------------------

Constraint = Callable[[random.Random, tuple[str, str]], tuple[str, Spec]]


def _c_lowercase(rng: random.Random, topic: tuple[str, str]) -> tuple[str, Spec]:
    text = rng.choice(("Use only lowercase letters.", "Write your whole answer in lowercase letters.",
                       "Do not use any capital letters."))
    return text, {"kind": "lowercase"}


def _c_uppercase(rng: random.Random, topic: tuple[str, str]) -> tuple[str, Spec]:
    text = rng.choice(("Write your entire answer in capital letters.", "Use only uppercase letters."))
    return text, {"kind": "uppercase"}


def _c_max_words(rng: random.Random, topic: tuple[str, str]) -> tuple[str, Spec]:
    n = rng.randint(5, 25)
    return rng.choice(("Use at most {n} words.", "Keep it under {m} words.")).format(n=n, m=n + 1), \
        {"kind": "max_words", "n": n}


def _c_word_range(rng: random.Random, topic: tuple[str, str]) -> tuple[str, Spec]:
    lo = rng.randint(5, 15)
    hi = lo + rng.randint(5, 15)
    return f"Use between {lo} and {hi} words.", {"kind": "word_count_between", "lo": lo, "hi": hi}


def _c_keyword(rng: random.Random, topic: tuple[str, str]) -> tuple[str, Spec]:
    kw = rng.choice(KEYWORDS)
    return rng.choice(("Include the word '{kw}'.", "Use the word '{kw}' somewhere.")).format(kw=kw), \
        {"kind": "include_keywords", "words": [kw]}


def _c_avoid_word(rng: random.Random, topic: tuple[str, str]) -> tuple[str, Spec]:
    return f"Do not use the word '{topic[1]}'.", {"kind": "exclude_words", "words": [topic[1]]}


def _c_starts_with(rng: random.Random, topic: tuple[str, str]) -> tuple[str, Spec]:
    word = rng.choice(START_WORDS)
    return f"Start your answer with the word '{word}'.", {"kind": "starts_with", "prefix": word}


def _c_ends_with(rng: random.Random, topic: tuple[str, str]) -> tuple[str, Spec]:
    phrase = rng.choice(END_PHRASES)
    return f"End your answer with the phrase '{phrase}'.", {"kind": "ends_with", "suffix": phrase}


def _c_no_commas(rng: random.Random, topic: tuple[str, str]) -> tuple[str, Spec]:
    return rng.choice(("Do not use any commas.", "Write it without using any commas.")), {"kind": "no_commas"}


def _c_quoted(rng: random.Random, topic: tuple[str, str]) -> tuple[str, Spec]:
    return "Wrap your entire answer in double quotes.", {"kind": "quoted"}


CONSTRAINTS: dict[str, Constraint] = {
    "lowercase": _c_lowercase, "uppercase": _c_uppercase, "max_words": _c_max_words,
    "word_range": _c_word_range, "keyword": _c_keyword, "avoid_word": _c_avoid_word,
    "starts_with": _c_starts_with, "ends_with": _c_ends_with, "no_commas": _c_no_commas,
    "quoted": _c_quoted,
}
# pairs a combo never draws: they contradict, or one already bounds what the other does
_CLASHES = {frozenset(p) for p in (("lowercase", "uppercase"), ("max_words", "word_range"))}
_COMBO_PAIRS = tuple((a, b) for i, a in enumerate(CONSTRAINTS) for b in list(CONSTRAINTS)[i + 1:]
                     if frozenset((a, b)) not in _CLASHES)
_OPENERS = ("Describe {t} in one sentence.", "Write a short sentence about {t}.",
            "Tell me one thing about {t}.", "In one or two short sentences, say why people like {t}.",
            "Write a one-line note about {t}.")

# --- families: (rng, k) -> partial record (instruction, verifiers, optional output) ----------------

Task = dict[str, Any]


def _arithmetic(rng: random.Random, k: int) -> Task:
    op = ("+", "-", "*")[k % 3]
    if op == "+":
        a, b = rng.randint(2, 99), rng.randint(2, 99)
        result, said = a + b, rng.choice((f"{a} + {b}", f"{a} plus {b}", f"the sum of {a} and {b}"))
    elif op == "-":
        a = rng.randint(10, 99)
        b = rng.randint(1, a - 1)
        result, said = a - b, rng.choice((f"{a} - {b}", f"{a} minus {b}", f"{b} subtracted from {a}"))
    else:
        a, b = rng.randint(2, 12), rng.randint(2, 20)
        result, said = a * b, rng.choice((f"{a} * {b}", f"{a} times {b}", f"{a} multiplied by {b}"))
    question = rng.choice(("What is {s}?", "Compute {s}.", "Calculate {s}.")).format(s=said)
    tail = rng.choice(("Answer with the number only.", "Reply with just the number.", "Give only the number."))
    return {"instruction": f"{question} {tail}", "output": str(result),
            "verifiers": [{"kind": "exact_answer", "answers": [str(result)], "mode": "number"}]}


def _fact(question: str, answers: Sequence[str], one_word: bool) -> Task:
    specs: list[Spec] = [{"kind": "exact_answer", "answers": list(answers), "mode": "text"}]
    if one_word:
        specs.append({"kind": "one_word"})
    return {"instruction": question, "output": answers[0], "verifiers": specs}


def _one_word_tail(rng: random.Random, answer: str) -> tuple[str, bool]:
    """A closing sentence and whether it asks for one word (only for one-word answers)."""
    if " " not in answer and rng.random() < 0.5:
        return rng.choice(("Answer in one word.", "Reply with a single word.")), True
    return rng.choice(("Answer briefly.", "Keep the answer short.", "Give only the answer.")), False


def _capital(rng: random.Random, k: int, item: tuple[str, tuple[str, ...]]) -> Task:
    country, cities = item
    question = rng.choice(("What is the capital of {c}?", "Which city is the capital of {c}?",
                           "Name the capital city of {c}.")).format(c=country)
    return _fact(f"{question} Answer with the city name only.", cities, one_word=False)


def _opposite(rng: random.Random, k: int, item: tuple[str, tuple[str, ...]]) -> Task:
    word, answers = item
    question = rng.choice(("What is the opposite of '{w}'?", "Give the antonym of '{w}'.",
                           "What word means the opposite of '{w}'?")).format(w=word)
    tail, one = _one_word_tail(rng, answers[0])
    return _fact(f"{question} {tail}", answers, one)


def _plural(rng: random.Random, k: int, item: tuple[str, str]) -> Task:
    word, plural = item
    question = rng.choice(("What is the plural of '{w}'?", "Write the plural form of the noun '{w}'.",
                           "One {w}, two ... what? Give the plural of '{w}'.")).format(w=word)
    tail, one = _one_word_tail(rng, plural)
    return _fact(f"{question} {tail}", [plural], one)


def _color(rng: random.Random, k: int, item: tuple[str, tuple[str, ...]]) -> Task:
    thing, answers = item
    question = rng.choice(("What color is {t}?", "What is the usual color of {t}?",
                           "Name the color of {t}.")).format(t=thing)
    tail, one = _one_word_tail(rng, answers[0])
    return _fact(f"{question} {tail}", answers, one)


def _single_constraint(name: str) -> Callable[[random.Random, int], Task]:
    def family(rng: random.Random, k: int) -> Task:
        topic = rng.choice(TOPICS)
        sentence, spec = CONSTRAINTS[name](rng, topic)
        return {"instruction": f"{rng.choice(_OPENERS).format(t=topic[0])} {sentence}", "verifiers": [spec]}
    return family


def _combo(rng: random.Random, k: int) -> Task:
    topic = rng.choice(TOPICS)
    parts = [CONSTRAINTS[name](rng, topic) for name in rng.choice(_COMBO_PAIRS)]
    text = " ".join([rng.choice(_OPENERS).format(t=topic[0])] + [sentence for sentence, _ in parts])
    return {"instruction": text, "verifiers": [spec for _, spec in parts]}


def _json_list(rng: random.Random, k: int) -> Task:
    n, category = rng.randint(2, 5), rng.choice(CATEGORIES)
    text = rng.choice(("List {n} {c} as a JSON list of strings. Output only the JSON.",
                       "Name {n} {c}. Reply with only a JSON array of {n} strings.",
                       "Give exactly {n} {c} as a JSON list of strings and nothing else."))
    return {"instruction": text.format(n=n, c=category),
            "verifiers": [{"kind": "json_list", "n": n, "strings": True}]}


def _bullet_list(rng: random.Random, k: int) -> Task:
    n, topic = rng.randint(2, 4), rng.choice(TIP_TOPICS)
    text = rng.choice(("Give {n} short tips about {t} as a bulleted list using '- '.",
                       "Write {n} brief tips for {t}, one per line, each line starting with '- '."))
    return {"instruction": text.format(n=n, t=topic), "verifiers": [{"kind": "bullet_points", "n": n}]}


def _numbered_list(rng: random.Random, k: int) -> Task:
    n, category = rng.randint(2, 5), rng.choice(CATEGORIES)
    text = rng.choice(("Name {n} {c} as a numbered list (1., 2., ...), one per line.",
                       "List {n} {c}, one per line, numbered from 1."))
    return {"instruction": text.format(n=n, c=category), "verifiers": [{"kind": "numbered_list", "n": n}]}


def _one_word(rng: random.Random, k: int) -> Task:
    topic = rng.choice(TOPICS)[0]
    question = rng.choice(ONE_WORD_QUESTIONS).format(topic=topic)
    tail = rng.choice(("Answer in one word.", "Reply with exactly one word.", "Use a single word."))
    return {"instruction": f"{question} {tail}", "verifiers": [{"kind": "one_word"}]}


_TABLES: dict[str, tuple[Sequence[Any], Callable[..., Task]]] = {
    "capital": (CAPITALS, _capital), "opposite": (OPPOSITES, _opposite),
    "plural": (PLURALS, _plural), "color": (COLORS, _color),
}
_FREE: dict[str, Callable[[random.Random, int], Task]] = {
    "arithmetic": _arithmetic,
    **{name: _single_constraint(name) for name in ("lowercase", "max_words", "keyword", "starts_with",
                                                    "ends_with", "no_commas")},
    "json_list": _json_list, "bullet_list": _bullet_list, "numbered_list": _numbered_list,
    "one_word": _one_word, "combo": _combo,
}
FAMILIES: tuple[str, ...] = ("arithmetic", "capital", "opposite", "plural", "color", "lowercase",
                             "max_words", "keyword", "starts_with", "ends_with", "no_commas",
                             "json_list", "bullet_list", "numbered_list", "one_word", "combo")
assert set(FAMILIES) == set(_TABLES) | set(_FREE), "every family needs exactly one builder"


def make_tasks(n: int, seed: int = 0) -> list[Task]:
    """``n`` tasks, families dealt round-robin, ids ``mini/0000`` ... in order; deterministic in ``seed``.

    Fact families walk their table in a seeded order before repeating an item; every family retries
    a few times to avoid repeating an instruction text already drawn.

    Example:
        >>> make_tasks(2)[0]["task"]
        'arithmetic'
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise InvalidInputError(f"n must be an int >= 0, got {n!r}")
    rng = random.Random(seed)
    decks: dict[str, list[Any]] = {}
    seen: set[str] = set()
    tasks = []
    for k in range(n):
        family = FAMILIES[k % len(FAMILIES)]
        for _ in range(20):
            if family in _TABLES:
                table, build = _TABLES[family]
                if not decks.get(family):
                    decks[family] = rng.sample(list(table), len(table))
                task = build(rng, k, decks[family].pop())
            else:
                task = _FREE[family](rng, k)
            if task["instruction"] not in seen:
                break
        seen.add(task["instruction"])
        record = {"id": f"mini/{k:04d}", "instruction": task["instruction"], "input": ""}
        if "output" in task:
            record["output"] = task["output"]
        tasks.append({**record, "verifiers": task["verifiers"], "task": family})
    return tasks


def split_tasks(tasks: Sequence[Task], fractions: Sequence[float] = (0.6, 0.15, 0.25),
                seed: int = 0) -> dict[str, list[Task]]:
    """``{"train", "val", "test"}`` lists, stratified by ``task``; ids are kept as they are.

    Within each family the tasks are shuffled with ``seed`` and cut by ``fractions`` (largest
    remainders get the leftover tasks); each split keeps the input order.

    Example:
        >>> {k: len(v) for k, v in split_tasks(make_tasks(32)).items()}
        {'train': 16, 'val': 0, 'test': 16}
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise InvalidInputError(f"fractions must be three shares >= 0 summing to 1, got {tuple(fractions)}")
    ids = [t["id"] for t in tasks]
    if len(set(ids)) != len(ids):
        raise InvalidInputError("task ids must be unique to split them")
    rng = random.Random(seed)
    by_family: dict[str, list[int]] = {}
    for i, task in enumerate(tasks):
        by_family.setdefault(task["task"], []).append(i)
    assignment: dict[int, str] = {}
    for family in sorted(by_family):
        members = by_family[family]
        rng.shuffle(members)
        sizes = _apportion(len(members), fractions)
        start = 0
        for split, size in zip(SPLITS, sizes):
            assignment.update((i, split) for i in members[start:start + size])
            start += size
    return {split: [t for i, t in enumerate(tasks) if assignment[i] == split] for split in SPLITS}


def _apportion(total: int, fractions: Sequence[float]) -> list[int]:
    """Largest-remainder rounding of ``total * fractions`` (ties to the earlier split)."""
    exact = [total * f for f in fractions]
    sizes = [int(x) for x in exact]
    order = sorted(range(len(exact)), key=lambda i: (-(exact[i] - sizes[i]), i))
    for i in order[: total - sum(sizes)]:
        sizes[i] += 1
    return sizes


def write_splits(out_dir: str | Path, n: int, seed: int = 0) -> dict[str, list[Task]]:
    """Write ``tasks_{train,val,test}.jsonl`` (UTF-8 JSON lines) under ``out_dir``; return the splits."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    splits = split_tasks(make_tasks(n, seed), seed=seed)
    for split, rows in splits.items():
        lines = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        (out / f"tasks_{split}.jsonl").write_text(lines, encoding="utf-8")
    return splits


def main(argv: Sequence[str] | None = None) -> None:
    """CLI: write the split files and print the counts per split and family."""
    parser = argparse.ArgumentParser(description="Write seeded, checkable miniature tasks as JSON lines.")
    parser.add_argument("--n", type=int, default=600, help="number of tasks in all")
    parser.add_argument("--seed", type=int, default=0, help="seed of the tasks and the split")
    parser.add_argument("--out", required=True, help="output folder for tasks_{train,val,test}.jsonl")
    args = parser.parse_args(argv)
    splits = write_splits(args.out, args.n, args.seed)
    counts = {split: Counter(t["task"] for t in rows) for split, rows in splits.items()}
    print(f"{'family':<14}" + "".join(f"{s:>7}" for s in SPLITS))
    for family in FAMILIES:
        print(f"{family:<14}" + "".join(f"{counts[s][family]:>7}" for s in SPLITS))
    print(f"{'total':<14}" + "".join(f"{len(splits[s]):>7}" for s in SPLITS))
    print(f"wrote {', '.join(f'tasks_{s}.jsonl' for s in SPLITS)} to {args.out}")


if __name__ == "__main__":
    main()
