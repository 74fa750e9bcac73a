"""Replica health that Serve can act on, and handle errors translated into the library's types."""

from __future__ import annotations

import asyncio

import pytest

from blender_serve.errors import ComponentUnavailableError, InvalidInputError
from deployments.handle_adapters import translated_error
from deployments.health import EngineHealth


def test_engine_health_probes_only_after_an_unexpected_failure():
    probes = []
    broken = {"now": False}

    def probe():
        probes.append(1)
        if broken["now"]:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")

    health = EngineHealth("the ranker", probe)
    asyncio.run(health.check())
    health.saw(InvalidInputError("bad input"))  # the request's fault, not the engine's
    asyncio.run(health.check())
    assert probes == [] and health.suspect is None

    health.saw(RuntimeError("out of memory"))
    asyncio.run(health.check())  # the probe passes: the replica stays
    assert probes == [1] and health.suspect is None

    broken["now"] = True
    health.saw(RuntimeError("CUDA error"))
    with pytest.raises(RuntimeError, match="the ranker cannot answer: RuntimeError: CUDA error: an illegal"):
        asyncio.run(health.check())
    assert health.suspect is not None  # still unhealthy at the next check, until a probe passes


def test_handle_errors_become_typed_errors_without_remote_tracebacks():
    from ray.exceptions import ActorDiedError, RayTaskError
    from ray.serve.exceptions import BackPressureError

    remote = RayTaskError("rank", "Traceback (most recent call last):\n  File \"/work/x.py\"", InvalidInputError("too few"))
    dual = remote.as_instanceof_cause()
    assert isinstance(dual, InvalidInputError) and "/work/x.py" in str(dual)  # what leaked before
    out = translated_error(dual, "the ranker")
    assert type(out) is InvalidInputError and str(out) == "too few"

    died = translated_error(ActorDiedError(), "base model 'alpha'")
    assert isinstance(died, ComponentUnavailableError)
    assert str(died) == "base model 'alpha' is unavailable (ActorDiedError); retry later"

    full = translated_error(BackPressureError(num_queued_requests=5, max_queued_requests=5), "the fuser")
    assert isinstance(full, ComponentUnavailableError) and "at capacity" in str(full)

    bug = translated_error(RayTaskError("fuse", "Traceback ... /work/secret/path.py", KeyError("k")).as_instanceof_cause(),
                           "the fuser")
    assert isinstance(bug, ComponentUnavailableError) and "/work" not in str(bug) and "KeyError" in str(bug)
