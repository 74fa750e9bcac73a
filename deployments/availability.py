"""Which deployments of this application Serve itself reports down, so that a request fails fast.

A call to a deployment with no running replica waits in Serve's queue until one appears: when a
node hosting a base model leaves, every request would wait out its full ``deadline_s`` (30 s in
the production config) before being answered without that model. ``DeploymentWatch`` reads
what ``serve.status()`` reports (fetched cheaply: see ``serve_status``) every ``period_s`` in the
background; a deployment Serve reports UNHEALTHY with no RUNNING replica is *down*, and the handle
adapters skip it at once (ComponentUnavailableError: the model is dropped, the ranker or fuser
falls back). A deployment scaled to zero, or still starting, is never down: its requests wait for
a replica as Serve intends. While a deployment is down the status is read every 0.5 s, so its
calls resume within about that once Serve reports it running again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from types import SimpleNamespace
from typing import Any, Callable, Optional

__all__ = ["DeploymentWatch", "serve_status", "status_from_details"]

logger = logging.getLogger("ray.serve")


class DeploymentWatch:
    def __init__(self, app: Optional[str] = None, period_s: float = 2.0, status: Optional[Callable[[], Any]] = None):
        self.app = app
        self.period_s = period_s
        self._status = status  # serve.status, injectable for tests
        self._down: dict[str, float] = {}  # deployment -> since when (monotonic)
        self._task: Optional[asyncio.Task] = None

    def down(self, deployment: str) -> bool:
        """Whether Serve reported ``deployment`` UNHEALTHY with no running replica at the last look.
        The first call inside an event loop starts the background watch."""
        if self._task is None:
            try:
                self._task = asyncio.get_running_loop().create_task(self._watch())
            except RuntimeError:  # no running loop: nothing to watch from
                pass
        return deployment in self._down

    def refresh(self) -> None:
        """Read Serve's status once (blocking: a call to the controller)."""
        status = (self._status or serve_status)()
        app = status.applications.get(self.app or _app_name())
        if app is None:
            return
        now, down = time.monotonic(), {}
        for name, dep in app.deployments.items():
            if str(getattr(dep.status, "value", dep.status)) == "UNHEALTHY" and not dep.replica_states.get("RUNNING", 0):
                down[name] = self._down.get(name, now)
        for name in set(down) - set(self._down):
            logger.warning("deployment %s has no running replica and is UNHEALTHY: its calls fail fast until it recovers", name)
        self._down = down

    async def _watch(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.refresh)
            except Exception as exc:  # a missed look keeps the last one; never stop watching
                logger.debug("deployment watch: %s", exc)
            # While something is down, look more often: its calls resume soon after it recovers.
            await asyncio.sleep(min(self.period_s, 0.5) if self._down else self.period_s)


def serve_status():
    """What ``serve.status()`` says of each application and deployment, read cheaply.

    ``serve.status()`` validates the controller's whole details dict into pydantic models, every
    deployment's config included (it pickles each request-router class): about 120 ms of CPU per
    call with 11 deployments on these machines, holding the GIL the ingress's event loops need, so
    every look delayed the requests in flight. The same dict, read as is, costs about 2 ms. Its
    shape is Serve's public ServeInstanceDetails schema; the client that fetches it is not public,
    so without it this falls back to ``serve.status()``.

    Returns:
        an object shaped like ``serve.status()``: ``applications[name]`` has ``status`` and
        ``message``, and ``deployments[name]`` with ``status``, ``message`` and ``replica_states``
        (replicas per state); read from the details dict, a deployment also has
        ``target_num_replicas`` and ``starting_since`` (wall-clock start of its oldest STARTING
        replica, or None).
    """
    from ray import serve

    try:
        from ray.serve.context import _get_global_client

        details = _get_global_client().get_serve_details()
    except (ImportError, AttributeError):
        return serve.status()
    return status_from_details(details)


def status_from_details(details: dict) -> SimpleNamespace:
    """``serve_status``'s answer, from a ServeInstanceDetails dict as the controller returns it."""
    return SimpleNamespace(applications={
        name: SimpleNamespace(
            status=_value(app.get("status")), message=app.get("message") or "",
            deployments={dep_name: _deployment(dep) for dep_name, dep in (app.get("deployments") or {}).items()})
        for name, app in (details.get("applications") or {}).items()})


def _deployment(dep: dict) -> SimpleNamespace:
    replicas = dep.get("replicas") or []
    starts = [r.get("start_time_s") for r in replicas if _value(r.get("state")) == "STARTING" and r.get("start_time_s")]
    return SimpleNamespace(status=_value(dep.get("status")), message=dep.get("message") or "",
                           replica_states=_count_states(replicas), target_num_replicas=dep.get("target_num_replicas"),
                           starting_since=min(starts) if starts else None)


def _value(state: Any) -> str:
    return str(getattr(state, "value", state))


def _count_states(replicas: list[dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for replica in replicas:
        state = _value(replica.get("state"))
        counts[state] = counts.get(state, 0) + 1
    return counts


def _app_name() -> str:
    from ray import serve

    return serve.get_replica_context().app_name
