"""The ``blender-serve`` subcommands that need no Ray: the in-process demo and result printing, and
the offline loop around serving (``collect``, ``eval``, ``train-ranker``, ``data``, ``build-local``).

``deployments.cli`` owns the parser; :func:`add_offline_commands` adds these subcommands to it, each
with a ``func`` that takes the parsed arguments and returns an exit status.
"""

from __future__ import annotations

import asyncio
import sys
import time

__all__ = ["run_demo", "print_result", "add_offline_commands"]


def ranker_label(path: str) -> str:
    """Which ranker a config's ``ranker.path`` names, in words (the checkpoint's note and directory)."""
    from blender_serve.loading import resolve_model_path
    from blender_serve.local_models import ranker_note

    return ranker_note(resolve_model_path(path))


def print_result(prompt: str, result, load_s: float, ranker: str = "") -> None:
    print(f"\nprompt: {prompt}\n")
    if ranker:
        print(f"ranker: {ranker}\n")
    print(f"candidates (ranked by {result.strategy}):")
    for c in result.candidates:
        mark = "*" if c.chosen else " "
        text = " ".join(c.text.split())
        print(f" {mark} #{c.rank} {c.model:<14} score {c.score:+.3f}  {c.latency_s:5.1f}s  {text[:160]}")
    for model, err in result.errors.items():
        print(f"   dropped {model}: {err}")
    how = f"fused from {', '.join(result.chosen)}" if result.fused else f"top candidate ({result.fusion_skipped_reason})"
    print(f"\nfinal answer [{how}]:\n{result.text.strip()}\n")
    t = result.timings
    print(f"load {load_s:.1f}s | generate {t['generate_s']:.1f}s, rank {t['rank_s']:.2f}s, fuse {t['fuse_s']:.1f}s, "
          f"total {t['total_s']:.1f}s | tokens: {result.usage.prompt_tokens} prompt, {result.usage.completion_tokens} completion")


async def _demo(prompt: str, max_tokens: int, fuse: bool, as_json: bool) -> int:
    from blender_serve.demo import demo_config
    from blender_serve.pipeline import Blender

    t0 = time.perf_counter()
    print("preparing the local models (first run converts SmolLM2 and builds the demo ranker)...", file=sys.stderr)
    config = demo_config(max_tokens=max_tokens, fuse=fuse)
    blender = Blender(config)
    await blender.start()
    load_s = time.perf_counter() - t0
    print(f"ensemble ready in {load_s:.1f}s; asking {len(blender.generators)} base models...", file=sys.stderr)
    result = await blender.blend(prompt)
    await blender.close()
    if as_json:
        print(result.model_dump_json(indent=2))
    else:
        print_result(prompt, result, load_s, ranker=ranker_label(config.ranker.path))
    return 0


def run_demo(prompt: str, max_tokens: int = 64, fuse: bool = True, as_json: bool = False) -> int:
    """Run the in-process demo ensemble once and print its result."""
    return asyncio.run(_demo(prompt, max_tokens, fuse, as_json))


# ------------------------------------------------------------------------------------------ offline loop
def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _json_out(obj) -> None:
    import dataclasses
    import json

    print(json.dumps(dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else obj, indent=2, ensure_ascii=False))


def _cmd_collect(a) -> int:
    from blender_serve.collect import collect
    from blender_serve.config import load_ensemble_config
    from blender_serve.eval.scoring import CandidateScorer

    config = load_ensemble_config(a.config, app=a.app)
    bert = None
    if a.bertscore_model:
        from blender_serve.eval.metrics import BertScorer

        bert = BertScorer(a.bertscore_model)
    scorer = CandidateScorer(metrics=_csv(a.metrics) if a.metrics is not None else None, bert_scorer=bert)
    report = asyncio.run(collect(config, a.tasks, a.out, endpoint=a.endpoint, endpoint_model=a.endpoint_model,
                                 api_key_env=a.api_key_env, concurrency=a.concurrency, limit=a.limit,
                                 skip_bad=a.skip_bad, scorer=scorer, progress=not a.no_progress))
    _json_out(report)
    return 0


def _cmd_eval(a) -> int:
    from blender_serve.eval.harness import DEFAULT_STRATEGIES, EvalSetup, run_eval
    from blender_serve.eval.report import markdown_table

    setup = EvalSetup(data=a.data, out=a.out, ranker=a.ranker, fuser=a.fuser,
                      strategies=_csv(a.strategies) if a.strategies else DEFAULT_STRATEGIES,
                      metrics=_csv(a.metrics) if a.metrics is not None else None, bertscore_model=a.bertscore_model,
                      random_seeds=a.random_seeds, top_k=a.top_k, fusion_strategy=a.fusion_strategy,
                      fuse_max_new_tokens=a.fuse_max_new_tokens, fuse_batch_size=a.fuse_batch_size,
                      primary=a.primary, limit=a.limit,
                      skip_bad=a.skip_bad, device=a.device, seed=a.seed, progress=not a.no_progress)
    results = run_eval(setup)
    print(markdown_table(results))
    print(f"wrote {a.out}/results.json, results.md and {', '.join(results.get('plots', [])) or 'no plots'}",
          file=sys.stderr)
    return 0


def _cmd_train(a) -> int:
    from blender_serve.ranker.train_data import examples_from_file
    from blender_serve.ranker.training import TrainConfig, train_ranker

    train, dropped = examples_from_file(a.train, a.signal, skip_bad=a.skip_bad)
    val, val_dropped = examples_from_file(a.val, a.signal, skip_bad=a.skip_bad) if a.val else ([], 0)
    print(f"{len(train)} training examples ({dropped} records without the signal {a.signal!r} skipped)"
          + (f", {len(val)} validation examples ({val_dropped} skipped)" if a.val else ""), file=sys.stderr)
    fields = {"init": a.init, "output_dir": a.out, "epochs": a.epochs, "learning_rate": a.lr,
              "batch_size": a.batch_size, "grad_accum": a.grad_accum, "pairs_per_example": a.pairs_per_example,
              "seed": a.seed, "device": a.device, "mixed_precision": a.mixed_precision, "max_steps": a.max_steps,
              "resume": not a.no_resume, "signal": a.signal,
              "source_maxlength": a.source_maxlength, "candidate_maxlength": a.candidate_maxlength}
    config = TrainConfig(**{k: v for k, v in fields.items() if v is not None and k in TrainConfig.model_fields})
    report = train_ranker(config, train, val, log=lambda line: print(line, file=sys.stderr), progress=not a.no_progress)
    _json_out(report.to_dict() if hasattr(report, "to_dict") else report)
    return 0


def _cmd_data(a) -> int:
    if a.data_command == "convert":
        from blender_serve.data.convert import convert_file

        n = convert_file(a.src, a.dst, src_format=getattr(a, "from"), dst_format=a.to, signal=a.signal,
                         skip_bad=a.skip_bad)
        print(f"wrote {n} items to {a.dst}", file=sys.stderr)
        return 0
    from blender_serve.data import ReadStats, iter_records

    stats = ReadStats()
    models: dict[str, int] = {}
    n = with_cmp = with_output = 0
    for r in iter_records(a.file, skip_bad=a.skip_bad, stats=stats):
        n += 1
        with_cmp += r.cmp_results is not None
        with_output += bool(r.output)
        for m in r.models:
            models[m] = models.get(m, 0) + 1
    _json_out({"records": n, "skipped_bad": stats.skipped, "errors": stats.errors, "with_cmp_results": with_cmp,
               "with_reference": with_output, "models": models})
    return 0


def _cmd_build_local(a) -> int:
    from blender_serve.local_models import LOCAL_MODELS

    if a.name not in LOCAL_MODELS:
        print(f"unknown local model {a.name!r}; known: {', '.join(LOCAL_MODELS)}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    print(f"{a.name}: building it if it is not cached yet...", file=sys.stderr)
    path = LOCAL_MODELS[a.name]()
    print(f"{a.name}: {path} ({time.perf_counter() - t0:.1f}s)")
    return 0


def add_offline_commands(sub) -> None:
    """Add ``collect``, ``eval``, ``train-ranker``, ``data`` and ``build-local`` to an argparse subparsers object."""
    from blender_serve.data.preferences import signal_help

    c = sub.add_parser("collect", help="run an ensemble's base models over instructions; write MixInstruct candidates")
    c.add_argument("--config", required=True, help="the ensemble: a Serve config file (as served), its args, or a bare ensemble")
    c.add_argument("--app", help="which blender-serve application of the config file (when it has several)")
    c.add_argument("--tasks", required=True, help="instruction records (MixInstruct JSON / JSON lines, .gz ok)")
    c.add_argument("--out", required=True, help="JSON-lines output; ids already there are skipped (resume)")
    c.add_argument("--endpoint", help="reach the models at this OpenAI-compatible base URL instead of loading them")
    c.add_argument("--endpoint-model", help="the endpoint serves one model under this name; sampling and system "
                                            "prompts are then sent from here")
    c.add_argument("--api-key-env", help="environment variable holding the endpoint's API key")
    c.add_argument("--concurrency", type=int, default=8, help="generation calls in flight (default 8)")
    c.add_argument("--limit", type=int)
    c.add_argument("--metrics", help="text metrics against `output` (comma list; default bleu,rouge1,rouge2,rougeL; '' for none)")
    c.add_argument("--bertscore-model", help="also score bertscore against `output` with this encoder (e.g. local:minilm-l6-v2)")
    c.add_argument("--skip-bad", action="store_true", help="skip and count malformed task records")
    c.add_argument("--no-progress", action="store_true")
    c.set_defaults(func=_cmd_collect)

    e = sub.add_parser("eval", help="compare single models, random, oracle, ranker strategies and the blender")
    e.add_argument("--data", required=True, help="MixInstruct-format records with candidates")
    e.add_argument("--out", required=True, help="directory for results.json, results.md, plots and the cache")
    e.add_argument("--ranker", help="PairRanker checkpoint dir, local:<name>, or an ensemble config file")
    e.add_argument("--fuser", help="fuser checkpoint dir, local:<name>, or an ensemble config file (adds `blender`)")
    e.add_argument("--strategies", help="comma list (default max_logits,max_wins,single_order,bubble)")
    e.add_argument("--metrics", help="text metrics computed against `output` (default bleu,rouge1,rouge2,rougeL)")
    e.add_argument("--bertscore-model", help="encoder dir for bertscore, e.g. local:minilm-l6-v2")
    e.add_argument("--random-seeds", type=int, default=5)
    e.add_argument("--top-k", type=int, default=3, help="candidates the fuser reads (default 3)")
    e.add_argument("--fusion-strategy", default="max_logits")
    e.add_argument("--fuse-max-new-tokens", type=int)
    e.add_argument("--fuse-batch-size", type=int, default=8, help="records fused per generate call (default 8)")
    e.add_argument("--primary", help="metric of the plots (default verify_all, else gpt_rank, else bertscore/rougeL)")
    e.add_argument("--limit", type=int)
    e.add_argument("--skip-bad", action="store_true")
    e.add_argument("--device", default="cpu")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--no-progress", action="store_true")
    e.set_defaults(func=_cmd_eval)

    t = sub.add_parser("train-ranker", help="fine-tune a PairRanker on MixInstruct-format data (original PairRM layout out)")
    t.add_argument("--train", required=True)
    t.add_argument("--val")
    t.add_argument("--init", required=True, help="a PairRM checkpoint to fine-tune, or an encoder dir (e.g. local:minilm-l6-v2)")
    t.add_argument("--out", required=True)
    t.add_argument("--signal", required=True, help=signal_help)
    t.add_argument("--epochs", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--grad-accum", type=int)
    t.add_argument("--pairs-per-example", type=int)
    t.add_argument("--source-maxlength", type=int)
    t.add_argument("--candidate-maxlength", type=int)
    t.add_argument("--seed", type=int)
    t.add_argument("--device")
    t.add_argument("--mixed-precision", choices=["no", "fp16", "bf16"])
    t.add_argument("--max-steps", type=int)
    t.add_argument("--no-resume", action="store_true")
    t.add_argument("--skip-bad", action="store_true")
    t.add_argument("--no-progress", action="store_true")
    t.set_defaults(func=_cmd_train)

    d = sub.add_parser("data", help="check or convert MixInstruct-format data")
    dsub = d.add_subparsers(dest="data_command", required=True)
    chk = dsub.add_parser("check", help="validate a file and count records, models, references, cmp_results")
    chk.add_argument("file")
    chk.add_argument("--skip-bad", action="store_true")
    conv = dsub.add_parser("convert", help="convert between mixinstruct, plain and pairs (preference pairs)")
    conv.add_argument("src")
    conv.add_argument("dst")
    conv.add_argument("--from", required=True, choices=["mixinstruct", "plain", "pairs"])
    conv.add_argument("--to", required=True, choices=["mixinstruct", "plain", "pairs"])
    conv.add_argument("--signal", help="to pairs: " + signal_help)
    conv.add_argument("--skip-bad", action="store_true")
    d.set_defaults(func=_cmd_data)

    b = sub.add_parser("build-local", help="build (once) and cache a local model, e.g. the trained pairrm-minilm-mini")
    b.add_argument("name")
    b.set_defaults(func=_cmd_build_local)
