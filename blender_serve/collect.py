"""``blender-serve collect``: run an ensemble's base models over instructions, write MixInstruct candidates.

The ensemble comes from the same config file that is served (:func:`blender_serve.config.load_ensemble_config`),
so the candidates evaluated and trained on are those of the models that are served. Two ways to reach them:

- in-process (default): each generator is built from its config and started here;
- ``endpoint``: each generator becomes an ``openai`` client of a running server.
  - With ``endpoint_model`` unset the server is a blender-serve deployment that serves every base model
    under its own name: the server applies each model's sampling defaults and system prompt.
  - With ``endpoint_model`` set, the server hosts one set of weights under that name (e.g. a vLLM server of
    SmolLM2) and each generator's sampling and system prompt are sent from here: one server,
    several "models" that differ in how they are asked.

Output is JSON lines, one record per instruction, written as each record completes (so a killed
run loses at most the records in flight); a rerun skips the ids already written. Candidates are
scored as they are written (:class:`blender_serve.eval.scoring.CandidateScorer`): text metrics
against the record's ``output`` when it has one, task verifiers when it has ``verifiers``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from blender_serve.config import BlenderConfig, GeneratorConfig
from blender_serve.errors import BlenderError, InvalidInputError
from blender_serve.prompts import instruction_prompt

__all__ = ["CollectReport", "collect", "endpoint_generators", "decoding_method"]

logger = logging.getLogger(__name__)


@dataclass
class CollectReport:
    """What one ``collect`` run did (JSON-serialisable with ``dataclasses.asdict``)."""

    written: int = 0
    skipped_existing: int = 0
    skipped_bad: int = 0
    failed_generations: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    completion_tokens: dict[str, int] = field(default_factory=dict)
    out: str = ""


def decoding_method(g: GeneratorConfig) -> str:
    """How a generator samples, as the ``decoding_method`` of its candidates (e.g. ``greedy`` or
    ``top_p_sampling(temperature=0.9,top_p=0.95,seed=1)``; ``default`` when the config sets nothing), plus
    ``+system_prompt`` when it has one."""
    s = g.sampling
    if s.temperature == 0:
        name = "greedy"
    else:
        settings = ",".join(f"{k}={v}" for k, v in (("temperature", s.temperature), ("top_p", s.top_p),
                                                     ("top_k", s.top_k), ("seed", s.seed)) if v is not None)
        name = f"{'top_p_sampling' if s.top_p is not None else 'sampling'}({settings})" if settings else "default"
    return name + ("+system_prompt" if g.system_prompt else "")


def endpoint_generators(config: BlenderConfig, base_url: str, endpoint_model: Optional[str] = None,
                        api_key_env: Optional[str] = None, timeout_s: float = 600.0) -> list[GeneratorConfig]:
    """The ensemble's generators as ``openai`` clients of ``base_url`` (see the module docstring)."""
    out = []
    for g in config.generators:
        fields = {"name": g.name, "backend": "openai", "model": endpoint_model or g.name,
                  "options": {"base_url": base_url, "api_key_env": api_key_env, "timeout_s": timeout_s}}
        if endpoint_model:  # one set of weights: this side says how each "model" is asked
            fields.update(sampling=g.sampling, system_prompt=g.system_prompt)
        elif g.sampling.max_tokens:
            fields["sampling"] = {"max_tokens": g.sampling.max_tokens}
        out.append(GeneratorConfig(**fields))
    return out


async def collect(config: BlenderConfig, tasks: str | Path, out: str | Path, *, endpoint: Optional[str] = None,
                  endpoint_model: Optional[str] = None, api_key_env: Optional[str] = None, concurrency: int = 8,
                  limit: Optional[int] = None, skip_bad: bool = False, scorer=None, progress: bool = True,
                  on_record: Optional[Callable] = None) -> CollectReport:
    """Answer every instruction record of ``tasks`` with every base model; append records to ``out``.

    Args:
        config: the ensemble (its ``generators`` are used; ranker and fuser are not loaded).
        tasks: MixInstruct-format records (JSON array or lines, ``.gz`` allowed); candidates, if any, are replaced.
        out: a JSON-lines file; records whose id it already holds are skipped (resume).
        endpoint / endpoint_model / api_key_env: reach the models over HTTP instead (module docstring).
        concurrency: most generation calls in flight at once, over all models and records.
        limit: stop after this many records of ``tasks`` (counting skipped ones), e.g. for a smoke run.
        skip_bad: skip malformed task records (counted) instead of stopping at the first.
        scorer: a CandidateScorer (default: text metrics against ``output`` and task verifiers).
    Returns:
        a CollectReport. A generation that fails is retried once, then left out of its record and counted.
    Example::

        cfg = load_ensemble_config("configs/cpu.yaml")
        report = asyncio.run(collect(cfg, "tasks.jsonl", "candidates.jsonl", concurrency=4))
    """
    from blender_serve.data import RecordWriter, ReadStats, existing_ids, iter_records
    from blender_serve.data.records import MixCandidate
    from blender_serve.eval.scoring import CandidateScorer
    from blender_serve.generators import build_generator

    if concurrency < 1:
        raise InvalidInputError(f"concurrency must be at least 1, got {concurrency}")
    started = time.perf_counter()
    out = Path(out)
    done = existing_ids(out) if out.exists() else set()
    gen_configs = (endpoint_generators(config, endpoint, endpoint_model, api_key_env) if endpoint
                   else list(config.generators))
    methods = {g.name: decoding_method(g) for g in config.generators}
    generators = [build_generator(g) for g in gen_configs]
    scorer = scorer or CandidateScorer()
    report = CollectReport(out=str(out), failed_generations={g.name: 0 for g in generators},
                           completion_tokens={g.name: 0 for g in generators})
    calls = asyncio.Semaphore(concurrency)
    # Enough records in flight to keep every call slot busy, no more (the task file is streamed).
    records_in_flight = asyncio.Semaphore(max(1, -(-concurrency // len(generators))) + 1)
    stats = ReadStats()

    async def answer(gen, messages):
        async with calls:
            for attempt in (1, 2):
                try:
                    return await gen.generate(messages)
                except BlenderError as exc:
                    if attempt == 2:
                        logger.warning("collect: %s failed twice: %s", gen.name, exc)
                        report.failed_generations[gen.name] += 1
                        return None

    async def one(record, writer, bar):
        try:
            messages = [{"role": "user", "content": instruction_prompt(record.instruction, record.input)}]
            outs = await asyncio.gather(*(answer(g, messages) for g in generators))
            candidates = []
            for g, o in zip(generators, outs):
                if o is None:
                    continue
                report.completion_tokens[g.name] += o.usage.completion_tokens
                candidates.append(MixCandidate(model=g.name, text=o.text, decoding_method=methods[g.name]))
            record = scorer.score_record(record.model_copy(update={"candidates": candidates}))
            writer.write(record)
            report.written += 1
            if on_record is not None:
                on_record(record)
        finally:
            records_in_flight.release()
            bar.update(1)

    from blender_serve.progress import progress_bar

    total = _count(tasks, limit)
    await asyncio.gather(*(g.start() for g in generators))
    pending: set[asyncio.Task] = set()
    crashed: list[BaseException] = []

    def finished(task: asyncio.Task) -> None:
        pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            crashed.append(task.exception())

    try:
        with RecordWriter(out) as writer, progress_bar(total, "collect", unit="rec", enabled=progress) as bar:
            for k, record in enumerate(iter_records(tasks, skip_bad=skip_bad, stats=stats)):
                if limit is not None and k >= limit:
                    break
                if record.id in done:
                    report.skipped_existing += 1
                    bar.update(1)
                    continue
                done.add(record.id)  # a repeated id in the task file is answered once
                await records_in_flight.acquire()
                task = asyncio.create_task(one(record, writer, bar))
                pending.add(task)
                task.add_done_callback(finished)
                if crashed:
                    raise crashed[0]
            if pending:
                await asyncio.gather(*pending)
    finally:
        for t in pending:
            t.cancel()
        await asyncio.gather(*(g.close() for g in generators), return_exceptions=True)
    report.skipped_bad = stats.skipped
    report.seconds = round(time.perf_counter() - started, 2)
    return report


def _count(path, limit: Optional[int]) -> Optional[int]:
    """Records in a task file (for the progress bar), or None when the file is large."""
    from blender_serve.data import iter_records

    try:
        if Path(path).stat().st_size > 50_000_000:
            return limit
    except OSError:
        return limit
    n = sum(1 for _ in iter_records(path, skip_bad=True))
    return n if limit is None else min(n, limit)
