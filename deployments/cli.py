"""The ``blender-serve`` command.

    blender-serve demo [--prompt TEXT] [--no-fuse] [--json]   in-process ensemble on small CPU models
    blender-serve validate FILE [FILE...]                       check Serve config files; loads no model
    blender-serve up [CONFIG] [--prompt TEXT] [--port N]       start an embedded local Ray, deploy CONFIG
                                                                (default: the CPU demo), ask over HTTP,
                                                                print candidates, ranking and answer, stop
    blender-serve collect --config CONFIG --tasks FILE --out FILE  candidates from the served base models
    blender-serve eval --data FILE [--ranker P] [--fuser P] --out DIR   every method side by side
    blender-serve train-ranker --train FILE --init P --signal S --out DIR   fine-tune a PairRanker
    blender-serve data check|convert ...                        MixInstruct-format data
    blender-serve build-local NAME                              build a local model (e.g. pairrm-minilm-mini)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

__all__ = ["main"]

DEFAULT_PROMPT = "What is the capital of France, and what is it famous for?"
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def default_config() -> tuple[Path, str]:
    """The CPU demo's config on the fastest engine set up here, and why: llama.cpp
    (configs/cpu-llama-cpp.yaml) once llama-cpp-python is installed, else transformers (configs/cpu.yaml)."""
    import importlib.util

    if importlib.util.find_spec("llama_cpp") is not None:
        return CONFIGS / "cpu-llama-cpp.yaml", "llama-cpp-python is installed: base models on llama.cpp"
    return CONFIGS / "cpu.yaml", ("base models on transformers; `bash scripts/llama_cpp.sh` (compiles for a few minutes, "
                                  "once) sets up llama.cpp: 4.5x the tokens/s here, `python -m bench backends`")


def _validate(paths: Sequence[str]) -> int:
    from deployments.builder import validate_config_file

    status = 0
    for path in paths:
        try:
            apps = validate_config_file(path)
            summary = "; ".join(f"{a.ensemble.name}: {len(a.ensemble.generators)} base models, fuser "
                                f"{'yes' if a.ensemble.fuser else 'no'}" for a in apps)
            print(f"{path}: OK ({summary})")
        except (ValueError, OSError) as exc:
            print(f"{path}: INVALID\n{exc}", file=sys.stderr)
            status = 1
    return status


def _deploy(app, name: str, route_prefix: Optional[str]) -> bool:
    """``serve.run`` with the deployment's progress on stderr; False (the failure printed) if it failed."""
    from ray import serve

    from deployments.deploy_progress import DeployProgress

    progress = DeployProgress(name)
    try:
        with progress:
            serve.run(app, name=name, route_prefix=route_prefix)
    except RuntimeError:  # Serve's "Deploying application ... failed": the status read says why
        if not progress.finish().failed:
            raise
        return False
    progress.finish()
    return True


def _up(config_path: str, prompt: str, port: Optional[int], keep: bool) -> int:
    import yaml

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a local throwaway cluster; production keeps auth
    import openai
    import ray
    from ray import serve

    from blender_serve.cli import print_result, ranker_label
    from blender_serve.config import blender_applications
    from blender_serve.ports import free_port
    from blender_serve.types import BlendResult
    from deployments.builder import build_app, validate_config_file

    validate_config_file(config_path)
    config = yaml.safe_load(Path(config_path).read_text())
    app_cfg = blender_applications(config, config_path)[0]
    if port is None:
        port = free_port()
    t0 = time.perf_counter()
    ray.init(include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        print(f"deploying {app_cfg['name']!r} from {config_path} (first run converts SmolLM2 and builds the demo ranker)...", file=sys.stderr)
        if not _deploy(build_app(app_cfg.get("args") or {}), app_cfg["name"], app_cfg.get("route_prefix", "/")):
            return 1
        ready_s = time.perf_counter() - t0
        print(f"ready in {ready_s:.1f}s at http://127.0.0.1:{port}; asking the ensemble over HTTP...", file=sys.stderr)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0, timeout=900)
        ensemble = app_cfg["args"]["ensemble"].get("name", "blender")
        resp = client.chat.completions.create(model=ensemble, messages=[{"role": "user", "content": prompt}])
        result = BlendResult.model_validate({**resp.model_extra["blender"], "text": resp.choices[0].message.content,
                                             "finish_reason": resp.choices[0].finish_reason,
                                             "usage": {"prompt_tokens": resp.usage.prompt_tokens,
                                                       "completion_tokens": resp.usage.completion_tokens}})
        print_result(prompt, result, ready_s, ranker=ranker_label(app_cfg["args"]["ensemble"]["ranker"]["path"]))
        if keep:
            print(f"serving at http://127.0.0.1:{port} (Ctrl-C to stop)", file=sys.stderr)
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        serve.shutdown()
        ray.shutdown()
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="blender-serve", description="LLM-Blender ensembles, served.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the ensemble in-process on small real CPU models")
    demo.add_argument("--prompt", default=DEFAULT_PROMPT)
    demo.add_argument("--max-tokens", type=int, default=64)
    demo.add_argument("--no-fuse", action="store_true", help="return the top-ranked candidate, skip fusion")
    demo.add_argument("--json", action="store_true", help="print the whole BlendResult as JSON")
    val = sub.add_parser("validate", help="check Serve config files against the app's args (loads no model)")
    val.add_argument("files", nargs="+")
    up = sub.add_parser("up", help="deploy a config on an embedded local Ray, ask one question over HTTP, print it")
    up.add_argument("config", nargs="?", default=None,
                    help="a Serve config (default: configs/cpu-llama-cpp.yaml when llama-cpp-python is installed, else configs/cpu.yaml)")
    up.add_argument("--prompt", default=DEFAULT_PROMPT)
    up.add_argument("--port", type=int, default=None)
    up.add_argument("--keep", action="store_true", help="keep serving after the answer")
    from blender_serve.cli import add_offline_commands

    add_offline_commands(sub)
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is not None:
        return args.func(args)
    if args.command == "validate":
        return _validate(args.files)
    if args.command == "up":
        config = args.config
        if config is None:
            path, why = default_config()
            print(f"config {path.relative_to(CONFIGS.parent)} ({why})", file=sys.stderr)
            config = str(path)
        return _up(config, args.prompt, args.port, args.keep)
    from blender_serve.cli import run_demo

    return run_demo(args.prompt, args.max_tokens, not args.no_fuse, args.json)


if __name__ == "__main__":
    sys.exit(main())
