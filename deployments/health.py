"""Health of a model replica that Ray Serve can act on.

Ray Serve calls each replica's ``check_health`` every ``health_check_period_s`` and replaces one
that raises. A constant answer would keep a replica whose engine is dead (a CUDA error poisons the
context, an out-of-memory leaves the model half-moved) serving errors forever. ``EngineHealth``
remembers an unexpected failure and, at the next health check, runs a tiny real call (the probe):
if that fails too the replica reports unhealthy and Serve restarts it; if it passes, the failure
was the request's own and the replica stays.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable, Optional

from blender_serve.errors import BlenderError

__all__ = ["EngineHealth"]

logger = logging.getLogger("ray.serve")


class EngineHealth:
    def __init__(self, component: str, probe: Callable[[], object]):
        self.component = component
        self._probe = probe
        self.suspect: Optional[str] = None  # the unexpected failure since the last passing probe

    def saw(self, exc: BaseException) -> None:
        """Note a failure of a call; an error raised on purpose (bad input...) says nothing about the engine."""
        if isinstance(exc, Exception) and not isinstance(exc, BlenderError):
            self.suspect = f"{type(exc).__name__}: {exc}"

    async def check(self) -> None:
        """Raise (the replica is unhealthy) when the last unexpected failure is confirmed by the probe."""
        if self.suspect is None:
            return
        try:
            await asyncio.to_thread(self._probe)
        except Exception as exc:
            logger.error("%s is unhealthy: %s (probe after %s)", self.component, exc, self.suspect)
            raise RuntimeError(f"{self.component} cannot answer: {type(exc).__name__}: {exc}") from None
        logger.info("%s probe passed after %s", self.component, self.suspect)
        self.suspect = None
