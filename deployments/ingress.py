"""The ingress deployment: wires the application together and serves it over HTTP and handles.

``Ingress`` builds the library's own ``Blender`` over deployment-handle adapters (one per base-LLM
deployment, the ranker and the fuser), wraps it in a ``BlenderServing``, and serves (a fuser of kind
'generator' has no deployment: ``Blender`` builds it over the named base model's ``HandleGenerator``,
so its calls go to that model's replicas):
- the HTTP routes of ``deployments.router`` (``@serve.ingress(app)``);
- the handle API, for other deployments and Python callers: ``blend``, ``rank``, ``compare`` and
  ``fuse`` take the typed requests of ``deployments.protocol`` (or dicts of them) and return typed
  results; bad input raises InvalidInputError.
Build it with ``deployments.builder.build_app``.
"""

from __future__ import annotations

from typing import Any, Union

from ray import serve

from blender_serve.errors import InvalidInputError, validated
from blender_serve.pipeline import Blender
from blender_serve.types import BlendResult
from deployments.access import AccessGuard
from deployments.availability import DeploymentWatch
from deployments.config import AppArgs
from deployments.handle_adapters import HandleFuser, HandleGenerator, HandleRanker
from deployments.metrics import BlendMetrics
from deployments.protocol import (
    BlendRequest, CompareRequest, CompareResponse, FuseRequest, FuseResponse, RankRequest, RankResponse,
)
from deployments.router import app
from deployments.serving import BlenderServing

__all__ = ["Ingress"]


@serve.ingress(app)
class Ingress:
    """The ensemble's front door. Build it with ``deployments.builder.build_app``."""

    def __init__(self, args: dict[str, Any], llms: dict[str, Any], ranker, fuser=None):
        args = validated(AppArgs, args, "application args")
        watch = DeploymentWatch()
        blender = Blender(args.ensemble, ranker=HandleRanker(ranker, watch),
                          fuser=HandleFuser(fuser, watch) if fuser is not None else None,
                          generators={name: HandleGenerator(name, handle, watch) for name, handle in llms.items()})
        access = AccessGuard.from_environ(args.access, args.limits)  # + the keys in this replica's environment
        self.serving = BlenderServing(args, blender, metrics=BlendMetrics(), access=access)

    @classmethod
    def default_options(cls) -> dict[str, Any]:
        """Past 256 requests at once a replica queues up to 512 more; beyond that Serve's proxy
        answers 503 with ``Retry-After: 1`` at once instead of letting requests wait unbounded."""
        return {"ray_actor_options": {"num_cpus": 0.1}, "max_ongoing_requests": 256, "max_queued_requests": 512,
                "backpressure_config": {"status_code": 503, "retry_after_s": 1}, "health_check_period_s": 10.0}

    # ------------------------------------------------------------------ handle API
    async def blend(self, request: Union[BlendRequest, dict]) -> BlendResult:
        """Run the ensemble on a BlendRequest (messages, options, sampling); returns a BlendResult."""
        return await self.serving.blend(validated(BlendRequest, request, "blend request"))

    async def rank(self, request: Union[RankRequest, dict]) -> RankResponse:
        """Rank caller-supplied candidates (the ranker as a service)."""
        return await self.serving.rank(validated(RankRequest, request, "rank request"))

    async def compare(self, request: Union[CompareRequest, dict]) -> CompareResponse:
        """Compare two candidates: the logit that ``candidate_a`` is better."""
        return await self.serving.compare(validated(CompareRequest, request, "compare request"))

    async def fuse(self, request: Union[FuseRequest, dict]) -> FuseResponse:
        """Fuse caller-supplied candidates (the fuser as a service; one-shot over handles)."""
        req = validated(FuseRequest, request, "fuse request")
        if req.stream:
            raise InvalidInputError("the handle API's fuse is one-shot; stream over HTTP (POST /v1/fuse)")
        return await self.serving.fuse(req)
