"""``build_app(args)``: the one place that applies Ray Serve to the plain deployment classes,
merges each component's defaults with the user's options, and binds the graph.
It is the ``import_path`` of serve_config.yaml: ``deployments.builder:build_app``.
"""

from __future__ import annotations

from typing import Any

from ray import serve
from ray.serve import Application

from blender_serve.config import blender_applications
from blender_serve.errors import validated
from deployments.config import AppArgs
from deployments.fuser_server import FuserServer
from deployments.ingress import Ingress
from deployments.llm_server import LLMServer
from deployments.ranker_server import RankerServer

__all__ = ["build_app", "validate_args", "validate_config_file"]


def _merge(defaults: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = dict(defaults)
    for key, value in overrides.items():
        if key == "ray_actor_options" and isinstance(value, dict):
            merged[key] = {**defaults.get(key, {}), **value}
        else:
            merged[key] = value
    return merged


def validate_args(args: dict[str, Any] | AppArgs) -> AppArgs:
    """Check an application config without loading any model (``blender-serve validate`` uses it)."""
    args = validated(AppArgs, args, "application args")
    from blender_serve.generators import build_generator

    for g in args.ensemble.generators:
        build_generator(g)  # validates the backend's options; loads nothing
    return args


def validate_config_file(path: str) -> list[AppArgs]:
    """Validate every blender-serve application of a Serve config file (YAML); loads no model."""
    import yaml

    with open(path) as f:
        config = yaml.safe_load(f)
    out = []
    for app in blender_applications(config, path):
        try:
            out.append(validate_args(app.get("args") or {}))
        except Exception as exc:
            raise ValueError(f"{path}: application {app.get('name')!r}: {exc}") from None
    return out


def build_app(args: dict[str, Any] | AppArgs) -> Application:
    """Bind the whole application: one deployment per base LLM, the ranker, the fuser, the ingress.

    A fuser of kind 'generator' gets no deployment: the ingress fuses through the handle of the base
    model it names, so fusion calls run on that model's replicas."""
    args = validate_args(args)
    ens = args.ensemble
    llms = {}
    for g in ens.generators:
        options = _merge(LLMServer.default_options(g), args.options_for(g.name).serve_options())
        llms[g.name] = serve.deployment(LLMServer).options(name=f"llm-{g.name}", **options).bind(g.model_dump())
    ranker_options = _merge(RankerServer.default_options(ens.ranker), args.options_for("ranker").serve_options())
    ranker = serve.deployment(RankerServer).options(name="ranker", **ranker_options).bind(
        ens.ranker.model_dump(), args.ranker_batching.max_batch_size, args.ranker_batching.batch_wait_timeout_s)
    fuser = None
    if ens.fuser is not None and ens.fuser.kind != "generator":  # kind 'generator' fuses through its LLMServer
        fuser_options = _merge(FuserServer.default_options(ens.fuser), args.options_for("fuser").serve_options())
        fuser = serve.deployment(FuserServer).options(name="fuser", **fuser_options).bind(ens.fuser.model_dump())
    ingress_options = _merge(Ingress.default_options(), args.options_for("ingress").serve_options())
    return serve.deployment(Ingress).options(name="ingress", **ingress_options).bind(args.model_dump(), llms, ranker, fuser)
