"""``blender-serve eval``: every selection method, the ranker and the blender, side by side on the same records.

Methods (each one picks, or writes, one answer per record):
- each single model (method name = the model's name);
- ``random``: a seeded uniform pick, averaged over several seeds;
- ``oracle-<metric>``: the candidate best on that metric (and ``oracle-gpt_rank`` from ``cmp_results``);
- ``ranker-<strategy>``: the ranker's top-1 under each ranking strategy;
- ``blender``: the ranker's top-K (``fusion_strategy``) fused by the fuser, scored like a candidate.

Scores: the record's candidates are (re)scored with :class:`~blender_serve.eval.scoring.CandidateScorer`
(text metrics against ``output``, verifiers), and every other numeric ``scores`` key the file carries
(``bartscore``, ``bleurt``...) is kept and reported too. GPT-Rank comes from ``cmp_results``.
The ranker scores every ordered candidate pair of a record once (cached on disk); every strategy is
then played from that matrix (:func:`blender_serve.ranker.aggregation.play`), so each sees exactly the
logits it would have asked for, and the number of comparisons it needed is reported beside its quality.
"""

from __future__ import annotations

import json
import logging
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from blender_serve.errors import InvalidInputError

__all__ = ["EvalSetup", "run_eval", "PREFERRED_METRICS"]

logger = logging.getLogger(__name__)

# Column order of the report; other score keys follow alphabetically.
PREFERRED_METRICS = ("verify_all", "verify", "bertscore", "bleu", "rouge1", "rouge2", "rougeL", "rougeLsum",
                     "bartscore", "bleurt")
DEFAULT_STRATEGIES = ("max_logits", "max_wins", "single_order", "bubble")
_PAIRS_PER_CALL = 256  # pairs scored per ranker call (the ranker batches them further)


@dataclass
class EvalSetup:
    """What to evaluate and how (the ``blender-serve eval`` options)."""

    data: str
    out: str
    ranker: Optional[str] = None  # checkpoint dir, local:<name>, or an ensemble config file
    fuser: Optional[str] = None  # checkpoint dir, local:<name>, or an ensemble config file
    strategies: Sequence[str] = DEFAULT_STRATEGIES
    metrics: Optional[Sequence[str]] = None  # text metrics computed against `output` (default: bleu, rouge*)
    bertscore_model: Optional[str] = None  # an encoder dir (or local:minilm-l6-v2) for bertscore
    random_seeds: int = 5
    top_k: int = 3
    fusion_strategy: str = "max_logits"
    fuse_max_new_tokens: Optional[int] = None
    fuse_batch_size: int = 8  # records fused per generate call (padded batch)
    primary: Optional[str] = None  # the metric the plots use (default: verify_all, else gpt_rank, else ...)
    limit: Optional[int] = None
    skip_bad: bool = False
    device: str = "cpu"
    ranker_batch_size: int = 32
    seed: int = 0
    progress: bool = True
    cache: Optional[str] = None  # SQLite file (default: <out>/cache.sqlite)
    extra: dict[str, Any] = field(default_factory=dict)


def _bar(setup: EvalSetup, total: int, desc: str):
    from blender_serve.progress import progress_bar

    return progress_bar(total, desc, unit="rec", enabled=setup.progress)


# ------------------------------------------------------------------------------------ loading
def _records(setup: EvalSetup):
    from blender_serve.data import ReadStats, iter_records

    stats = ReadStats()
    records = []
    for record in iter_records(setup.data, skip_bad=setup.skip_bad, stats=stats):
        if setup.limit is not None and len(records) >= setup.limit:
            break
        records.append(record)
    if not records:
        raise InvalidInputError(f"{setup.data} holds no records to evaluate")
    return records, stats


def _is_config_file(spec: str) -> bool:
    return Path(spec).is_file() and Path(spec).suffix.lower() in (".yaml", ".yml", ".json")


def load_ranker(spec: str, device: str = "cpu", batch_size: int = 32):
    """A PairRanker from a checkpoint dir, ``local:<name>``, or the ``ranker`` of an ensemble config file."""
    from blender_serve.ranker import PairRanker

    if _is_config_file(spec):
        from blender_serve.config import load_ensemble_config

        cfg = load_ensemble_config(spec).ranker
        return PairRanker.from_config(cfg.model_copy(update={"device": device})), cfg.path
    return PairRanker.from_pretrained(spec, device=device, batch_size=batch_size), spec


def load_fuser(spec: str, device: str = "cpu", max_new_tokens: Optional[int] = None):
    """A fuser from a checkpoint dir / ``local:<name>`` (seq2seq when its config says encoder-decoder,
    else a prompted causal LM), or the ``fuser`` of an ensemble config file (one of kind 'generator'
    runs here as a prompted causal LM over its base model's checkpoint: the same prompt, greedy)."""
    from blender_serve.config import FuserConfig
    from blender_serve.fuser import build_fuser

    if _is_config_file(spec):
        from blender_serve.config import load_ensemble_config

        ensemble = load_ensemble_config(spec)
        cfg = ensemble.fuser
        if cfg is None:
            raise InvalidInputError(f"{spec} configures no fuser; pass a fuser checkpoint or a config with one")
        if cfg.kind == "generator":
            base = next(g for g in ensemble.generators if g.name == cfg.generator)
            if base.backend not in ("transformers", "vllm") or not base.model:
                raise InvalidInputError(f"{spec}: the fuser writes through base model {base.name!r} ({base.backend}), "
                                        "which has no local checkpoint to fuse with here; pass a fuser checkpoint")
            cfg = FuserConfig(kind="causal", path=base.model, num_beams=1, max_length=cfg.max_length,
                              candidate_max_length=cfg.candidate_max_length, max_new_tokens=cfg.max_new_tokens)
        cfg = cfg.model_copy(update={"device": device})
    else:
        from blender_serve.loading import resolve_model_path

        path = Path(resolve_model_path(spec))
        config = path / "config.json"
        seq2seq = config.is_file() and bool(json.loads(config.read_text()).get("is_encoder_decoder"))
        cfg = FuserConfig(kind="seq2seq" if seq2seq else "causal", path=spec, device=device,
                          num_beams=4 if seq2seq else 1)
    if max_new_tokens:
        cfg = cfg.model_copy(update={"max_new_tokens": max_new_tokens})
    return build_fuser(cfg), cfg


# ------------------------------------------------------------------------------------ scoring
def _metric_names(records, primary: Optional[str]) -> list[str]:
    keys: set[str] = set()
    for r in records:
        for c in r.candidates:
            keys.update(k for k, v in c.scores.items() if isinstance(v, (int, float)) and math.isfinite(v))
    ordered = [m for m in PREFERRED_METRICS if m in keys] + sorted(keys - set(PREFERRED_METRICS))
    if primary and primary not in ordered and primary != "gpt_rank":
        raise InvalidInputError(f"--primary {primary!r} is not a score of these records; they have {ordered}")
    return ordered


def _score_matrix(records, metrics: list[str]) -> dict[str, list[list[float]]]:
    """metric -> per record, per candidate value (NaN where the candidate lacks it)."""
    return {m: [[float(c.scores.get(m, math.nan)) for c in r.candidates] for r in records] for m in metrics}


def _mean(values) -> float:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(vals)) if vals else math.nan


def _method_row(picks: Sequence[Optional[int]], table: dict[str, list[list[float]]]) -> dict[str, float]:
    row = {}
    for m, per_record in table.items():
        row[m] = _mean(per_record[i][p] for i, p in enumerate(picks) if p is not None)
    row["n"] = sum(p is not None for p in picks)
    return row


def _argmax(values: Sequence[float]) -> Optional[int]:
    best, best_v = None, -math.inf
    for k, v in enumerate(values):
        if not math.isnan(v) and v > best_v:
            best, best_v = k, v
    return best


# ------------------------------------------------------------------------------------ ranker
def _ranker_matrices(ranker, fingerprint: str, records, cache, setup: EvalSetup) -> list[Optional[np.ndarray]]:
    """The full pairwise logit matrix of every record with >= 2 candidates (cached by pair)."""
    from blender_serve.eval.cache import digest

    matrices: list[Optional[np.ndarray]] = [None] * len(records)
    todo = [k for k, r in enumerate(records) if len(r.candidates) >= 2]
    with _bar(setup, len(todo), "ranker") as bar:
        start = 0
        while start < len(todo):
            chunk, pairs_in_chunk = [], 0
            while start < len(todo) and (not chunk or pairs_in_chunk < _PAIRS_PER_CALL):
                n = len(records[todo[start]].candidates)
                chunk.append(todo[start])
                pairs_in_chunk += n * (n - 1)
                start += 1
            keys, wanted = {}, {}
            for k in chunk:
                r = records[k]
                texts = [c.text for c in r.candidates]
                n = len(texts)
                keys[k] = {(i, j): digest(fingerprint, r.source, texts[i], texts[j])
                           for i in range(n) for j in range(n) if i != j}
            cached = cache.get_pairs([key for k in chunk for key in keys[k].values()])
            for k in chunk:
                wanted[k] = [ij for ij, key in keys[k].items() if key not in cached]
            need = [k for k in chunk if wanted[k]]
            if need:
                logits = ranker.pair_logits([records[k].source for k in need],
                                            [[c.text for c in records[k].candidates] for k in need],
                                            [wanted[k] for k in need])
                fresh = []
                for k, values in zip(need, logits):
                    for ij, v in zip(wanted[k], values):
                        cached[keys[k][ij]] = float(v)
                        fresh.append((keys[k][ij], float(v)))
                cache.put_pairs(fresh)
            for k in chunk:
                n = len(records[k].candidates)
                M = np.zeros((n, n))
                for (i, j), key in keys[k].items():
                    M[i, j] = cached[key]
                matrices[k] = M
            bar.update(len(chunk))
    return matrices


def _strategy_picks(matrices, records, strategies: Sequence[str], seed: int):
    """strategy -> (top-1 pick per record, order per record, mean comparisons per ranked record)."""
    from blender_serve.ranker.aggregation import get_strategy, play

    out = {}
    for name in strategies:
        strategy = get_strategy(name)
        picks, orders, passes, scores = [], [], [], []
        for k, (M, r) in enumerate(zip(matrices, records)):
            if M is None:  # one candidate (or none): nothing to rank
                picks.append(0 if r.candidates else None)
                orders.append(list(range(len(r.candidates))))
                scores.append(None)
                continue
            ranking = play(strategy, M, np.random.default_rng([seed, k]))
            picks.append(ranking.order[0])
            orders.append(list(ranking.order))
            scores.append(ranking.scores)
            passes.append(ranking.num_pairs)
        out[name] = {"picks": picks, "orders": orders, "scores": scores,
                     "comparisons": float(np.mean(passes)) if passes else 0.0}
    return out


def _pairwise_accuracy(matrices, table: dict[str, list[list[float]]], cmp_scores_per_record) -> dict[str, dict]:
    from blender_serve.eval.agreement import pairwise_accuracy_from_matrix

    out = {}
    signals = dict(table)
    if any(s is not None for s in cmp_scores_per_record):
        signals["cmp_results"] = cmp_scores_per_record
    for name, per_record in signals.items():
        correct = counted = 0
        for M, target in zip(matrices, per_record):
            if M is None or target is None:
                continue
            if any(math.isnan(t) for t in target):
                continue
            c, n = pairwise_accuracy_from_matrix(M, target)
            correct, counted = correct + c, counted + n
        if counted:
            out[name] = {"accuracy": 100.0 * correct / counted, "pairs": counted}
    return out


# ------------------------------------------------------------------------------------ fusion
def _fuse_all(setup: EvalSetup, records, orders, scorer, cache) -> tuple[list[Optional[dict]], dict]:
    """The blender's fused answer for every record, scored; cached by fuser, record and top-K texts.

    Records missing from the cache are fused ``fuse_batch_size`` at a time (one padded generate call)."""
    from blender_serve.eval.cache import digest, model_fingerprint
    from blender_serve.loading import resolve_model_path

    if setup.fuse_batch_size < 1:
        raise InvalidInputError(f"fuse_batch_size must be at least 1, got {setup.fuse_batch_size}")
    fuser, cfg = load_fuser(setup.fuser, device=setup.device, max_new_tokens=setup.fuse_max_new_tokens)
    fp = digest(model_fingerprint(resolve_model_path(cfg.path)), cfg.model_dump_json())
    items: dict[int, tuple[str, str, list[str]]] = {}
    texts: dict[int, str] = {}
    for k, (r, order) in enumerate(zip(records, orders)):
        if r.candidates:
            items[k] = (r.instruction, r.input, [r.candidates[i].text for i in order[: setup.top_k]])
    keys = {k: digest(fp, *item[:2], *item[2]) for k, item in items.items()}
    for k, key in keys.items():
        hit = cache.get_fused(key)
        if hit is not None:
            texts[k] = hit["text"]
    todo = [k for k in items if k not in texts]
    cached_n = len(texts)
    with _bar(setup, len(todo), "fuse") as bar:
        for start in range(0, len(todo), setup.fuse_batch_size):
            chunk = todo[start:start + setup.fuse_batch_size]
            for k, out in zip(chunk, fuser.fuse_batch([items[k] for k in chunk])):
                texts[k] = out.text
                cache.put_fused(keys[k], {"text": out.text})
            bar.update(len(chunk))
    close = getattr(fuser, "close", None)
    if close is not None:
        close()
    rows: list[Optional[dict]] = [None] * len(records)
    for k, text in texts.items():
        rows[k] = {"text": text, "scores": scorer.score_texts(records[k], [text])[0]}
    return rows, {"path": cfg.path, "kind": cfg.kind, "top_k": setup.top_k, "strategy": setup.fusion_strategy,
                  "batch_size": setup.fuse_batch_size, "fused": len(todo), "cached": cached_n}


def _partial_fusion_rows(fused, ranked, table, metrics, primary: Optional[str],
                         shares=(25, 50, 75)) -> tuple[dict[str, dict], dict[str, list[float]]]:
    """``blender-fuse<q>%``: fuse only the q% of records where the ranker is least sure (smallest
    top-1 - top-2 score margin), answer the rest with its top-1: "fuse or pick?" (SPEC: Self-MoA).
    Uses the fused answers already made, so it costs nothing more. Returns the rows and, per row, the
    primary metric's value on every record (NaN where it has none), for the significance test."""
    margins = []
    for scores in ranked["scores"]:
        if scores is None:
            margins.append(math.inf)  # a lone candidate: nothing to fuse
            continue
        top2 = np.sort(np.asarray(scores, dtype=float))[::-1][:2]
        margins.append(float(top2[0] - top2[1]))
    finite = [m for m in margins if math.isfinite(m)]
    rows, vectors = {}, {}
    for q in shares:
        if not finite:
            break
        cut = float(np.percentile(finite, q))
        row = {}
        for metric in metrics:
            values = []
            for k, (f, pick, margin) in enumerate(zip(fused, ranked["picks"], margins)):
                if f is None or pick is None:
                    values.append(math.nan)
                else:
                    values.append(f["scores"].get(metric, math.nan) if margin <= cut else table[metric][k][pick])
            row[metric] = _mean(values)
            if metric == primary:
                vectors[f"blender-fuse{q}%"] = values
        row["n"] = sum(f is not None for f in fused)
        row["fused_share"] = 100.0 * sum(m <= cut for m in margins) / len(margins)
        rows[f"blender-fuse{q}%"] = row
    return rows, vectors


def paired_bootstrap(values: Sequence[float], baseline: Sequence[float], higher_is_better: bool = True,
                     seed: int = 0, resamples: int = 2000) -> Optional[dict[str, Any]]:
    """How much a method beats a baseline on the same records, with a 95% paired-bootstrap interval.

    ``delta`` > 0 means better (for a lower-is-better metric the sign is flipped); records where
    either value is missing are left out. ``p_not_better`` is the share of resamples whose mean
    delta is <= 0. None when no record has both values.
    Example: ``paired_bootstrap([1, 1, 0, 1], [0, 1, 0, 0])["delta"] == 0.5``.
    """
    a, b = np.asarray(values, dtype=float), np.asarray(baseline, dtype=float)
    keep = np.isfinite(a) & np.isfinite(b)
    d = (a - b)[keep] if higher_is_better else (b - a)[keep]
    if d.size == 0:
        return None
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(resamples, d.size))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return {"delta": float(d.mean()), "ci95": [float(lo), float(hi)], "n": int(d.size),
            "p_not_better": float((means <= 0).mean())}


def _significance(vectors: dict[str, list[float]], models: Sequence[str], primary: Optional[str],
                  seed: int) -> Optional[dict[str, Any]]:
    """Every method against the best single model on the primary metric (paired bootstrap, same records)."""
    if primary is None:
        return None
    higher = primary != "gpt_rank"
    means = {m: _mean(vectors[m]) for m in models if m in vectors}
    means = {m: v for m, v in means.items() if not math.isnan(v)}
    if not means:
        return None
    best = (max if higher else min)(means, key=means.get)
    out = {}
    for name, values in vectors.items():
        if name == best or not len(values):
            continue
        stats = paired_bootstrap(values, vectors[best], higher_is_better=higher, seed=seed)
        if stats is not None:
            out[name] = stats
    return {"metric": primary, "baseline": best, "higher_is_better": higher, "methods": out}


# ------------------------------------------------------------------------------------ main
def run_eval(setup: EvalSetup) -> dict[str, Any]:
    """Evaluate, write ``results.json``, ``results.md`` and the plots into ``setup.out``; return the results."""
    from blender_serve.data.preferences import cmp_scores
    from blender_serve.eval.cache import EvalCache, model_fingerprint
    from blender_serve.eval.gpt_rank import gpt_rank_summary, model_gpt_ranks, record_gpt_ranks
    from blender_serve.eval.report import write_report
    from blender_serve.eval.scoring import CandidateScorer

    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    out = Path(setup.out)
    out.mkdir(parents=True, exist_ok=True)
    records, stats = _records(setup)
    timings["read_s"] = time.perf_counter() - t0

    bert = None
    if setup.bertscore_model:
        from blender_serve.eval.metrics import BertScorer
        from blender_serve.loading import resolve_model_path

        bert = BertScorer(resolve_model_path(setup.bertscore_model), device=setup.device)
    scorer = CandidateScorer(metrics=setup.metrics, bert_scorer=bert)
    t = time.perf_counter()
    with _bar(setup, len(records), "score") as bar:
        rescored = []
        for r in records:
            rescored.append(scorer.score_record(r))
            bar.update(1)
    records = rescored
    timings["score_s"] = time.perf_counter() - t

    metrics = _metric_names(records, setup.primary)
    if not metrics and not any(r.cmp_results for r in records):
        raise InvalidInputError(f"{setup.data}: no candidate scores, no reference `output`, no verifiers and no "
                                "cmp_results: there is nothing to measure quality with")
    table = _score_matrix(records, metrics)
    models: list[str] = []
    for r in records:
        models.extend(m for m in r.models if m not in models)

    picks: dict[str, list[Optional[int]]] = {}
    for m in models:
        picks[m] = [r.models.index(m) if m in r.models else None for r in records]
    for metric in metrics:
        picks[f"oracle-{metric}"] = [_argmax(v) for v in table[metric]]
    cmp_per_record = []
    for r in records:
        s = cmp_scores(r)
        cmp_per_record.append(None if s is None else [float(s.get(m, math.nan)) for m in r.models])
    record_ranks = [record_gpt_ranks(r) for r in records]
    has_gpt = any(x is not None for x in record_ranks)
    if has_gpt:
        picks["oracle-gpt_rank"] = [None if s is None else _argmax(s) for s in cmp_per_record]
    primary = setup.primary or ("verify_all" if "verify_all" in metrics else "gpt_rank" if has_gpt else
                                next((m for m in ("bertscore", "rougeL", "bleu") if m in metrics), metrics[0] if metrics else None))
    if primary == "gpt_rank":  # per record and candidate: its GPT rank (lower is better)
        primary_table = [[float(rk[m]) if rk and m in rk else math.nan for m in r.models]
                         for r, rk in zip(records, record_ranks)]
    else:
        primary_table = table.get(primary, [[math.nan] * len(r.candidates) for r in records])

    def primary_values(ps: Sequence[Optional[int]]) -> list[float]:
        return [primary_table[k][p] if p is not None else math.nan for k, p in enumerate(ps)]

    ranker_info: dict[str, Any] = {}
    strategy_results = {}
    matrices: list = [None] * len(records)
    cache = EvalCache(setup.cache or out / "cache.sqlite")
    if setup.ranker:
        from blender_serve.loading import resolve_model_path

        t = time.perf_counter()
        ranker, ranker_path = load_ranker(setup.ranker, device=setup.device, batch_size=setup.ranker_batch_size)
        fingerprint = model_fingerprint(resolve_model_path(ranker_path))
        timings["ranker_load_s"] = time.perf_counter() - t
        t = time.perf_counter()
        matrices = _ranker_matrices(ranker, fingerprint, records, cache, setup)
        timings["ranker_s"] = time.perf_counter() - t
        strategies = list(dict.fromkeys([*setup.strategies, setup.fusion_strategy] if setup.fuser else setup.strategies))
        strategy_results = _strategy_picks(matrices, records, strategies, setup.seed)
        for name in setup.strategies:
            picks[f"ranker-{name}"] = strategy_results[name]["picks"]
        ranker_info = {"path": str(ranker_path), "note": (getattr(ranker, "_checkpoint", None) and
                                                          ranker._checkpoint.ranker_config.get("original", {}).get("note")),
                       "comparisons_per_record": {n: strategy_results[n]["comparisons"] for n in setup.strategies},
                       "cache_hits": cache.hits, "cache_misses": cache.misses,
                       "pairwise_accuracy": _pairwise_accuracy(matrices, table, cmp_per_record)}
        del ranker

    methods = {name: _method_row(p, table) for name, p in picks.items()}
    vectors = {name: primary_values(p) for name, p in picks.items()}
    rng = np.random.default_rng(setup.seed)
    random_runs = []
    for _ in range(setup.random_seeds):
        run = [int(rng.integers(len(r.candidates))) if r.candidates else None for r in records]
        random_runs.append(run)
    rows = [_method_row(run, table) for run in random_runs]
    methods["random"] = {m: _mean(row[m] for row in rows) for m in metrics}
    methods["random"]["n"] = rows[0]["n"] if rows else 0
    if rows and len(rows) > 1:
        methods["random"]["std"] = {m: float(np.nanstd([row[m] for row in rows])) for m in metrics}
    if random_runs:
        with warnings.catch_warnings():  # a record no seed could score is NaN, on purpose
            warnings.simplefilter("ignore", RuntimeWarning)
            per_seed = np.array([primary_values(run) for run in random_runs], dtype=float)
            vectors["random"] = list(np.nanmean(per_seed, axis=0)) if np.isfinite(per_seed).any() else []

    fusion_info = None
    if setup.fuser:
        if not setup.ranker:
            raise InvalidInputError("the blender method fuses the ranker's top-K: pass --ranker with --fuser")
        t = time.perf_counter()
        fused, fusion_info = _fuse_all(setup, records, strategy_results[setup.fusion_strategy]["orders"], scorer, cache)
        timings["fuse_s"] = time.perf_counter() - t
        row = {m: _mean((f["scores"].get(m, math.nan) if f else None) for f in fused) for m in metrics}
        row["n"] = sum(f is not None for f in fused)
        methods["blender"] = row
        vectors["blender"] = [f["scores"].get(primary, math.nan) if f else math.nan for f in fused]
        partial_rows, partial_vectors = _partial_fusion_rows(fused, strategy_results[setup.fusion_strategy], table,
                                                             metrics, primary)
        methods.update(partial_rows)
        vectors.update(partial_vectors)
        (out / "fused.jsonl").write_text("".join(json.dumps({"id": r.id, "text": f["text"], "scores": f["scores"]},
                                                            ensure_ascii=False) + "\n"
                                                 for r, f in zip(records, fused) if f), encoding="utf-8")

    gpt = None
    if has_gpt:
        model_rank = model_gpt_ranks(record_ranks)
        compare_to = sorted(model_rank, key=model_rank.get)
        selections = {name: [None if p is None else records[i].models[p] for i, p in enumerate(ps)]
                      for name, ps in picks.items()}
        gpt = gpt_rank_summary(record_ranks, selections, compare_to)
        rand = [gpt_rank_summary(record_ranks, {"random": [records[i].models[p] if p is not None else None
                                                            for i, p in enumerate(run)]}, compare_to)["random"]
                for run in random_runs]
        gpt["random"] = {k: float(np.mean([x[k] for x in rand])) for k in rand[0]}
        for name, row in gpt.items():
            methods.setdefault(name, {}).update({k: v for k, v in row.items() if k != "n"})
            methods[name]["n_gpt_rank"] = row["n"]

    significance = _significance(vectors, models, primary, setup.seed)
    cache.close()
    timings["total_s"] = time.perf_counter() - t0
    results = {
        "methods": methods,
        "metrics": metrics + (["gpt_rank"] if gpt else []),
        "primary": primary,
        "higher_is_better": {m: m != "gpt_rank" for m in metrics + ["gpt_rank"]},
        "models": models,
        "data": {"path": str(setup.data), "records": len(records), "skipped_bad": stats.skipped,
                 "with_cmp_results": sum(x is not None for x in record_ranks),
                 "with_reference": sum(bool(r.output) for r in records),
                 "candidates_per_record": _mean(len(r.candidates) for r in records)},
        "ranker": ranker_info or None,
        "fusion": fusion_info,
        "significance": significance,
        "timings": {k: round(v, 2) for k, v in timings.items()},
        "setup": {"strategies": list(setup.strategies), "random_seeds": setup.random_seeds, "seed": setup.seed,
                  "top_k": setup.top_k, "fusion_strategy": setup.fusion_strategy, **setup.extra},
    }
    signed = primary_table if primary != "gpt_rank" else [[-v for v in row] for row in primary_table]
    write_report(results, out, records=records, primary_values=signed, strategy_results=strategy_results, picks=picks)
    return results
