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


def test_deployment_watch_marks_only_unhealthy_deployments_without_running_replicas():
    from types import SimpleNamespace as NS

    from deployments.availability import DeploymentWatch
    from deployments.handle_adapters import HandleGenerator

    def dep(status, **states):
        return NS(status=status, replica_states=states)

    now = {"look": {"llm-a": dep("UNHEALTHY", PENDING_ALLOCATION=1), "llm-b": dep("UNHEALTHY", RUNNING=1, STARTING=1),
                    "llm-c": dep("UPSCALING"), "ranker": dep("HEALTHY", RUNNING=1)}}  # llm-c: scaled to zero, waits
    watch = DeploymentWatch(app="blender", status=lambda: NS(applications={"blender": NS(deployments=now["look"])}))
    watch.refresh()
    assert [d for d in ("llm-a", "llm-b", "llm-c", "ranker") if watch.down(d)] == ["llm-a"]

    class Handle:
        deployment_name = "llm-a"

        def options(self, **kw):
            return self

    gen = HandleGenerator("a", Handle(), watch)
    with pytest.raises(ComponentUnavailableError, match="base model 'a' has no running replica") as info:
        asyncio.run(gen.generate([{"role": "user", "content": "hi"}]))
    assert info.value.retry_after_s == 5.0
    now["look"] = {"llm-a": dep("HEALTHY", RUNNING=1)}
    watch.refresh()
    assert not watch.down("llm-a")


def test_percentile_is_nearest_rank_and_shared_by_the_report():
    from blender_serve.testing.stats import percentile
    from deployments.reliability import Outcomes

    xs = [0.5, 0.1, 0.3, 0.2, 0.4]
    assert (percentile(xs, 0), percentile(xs, 50), percentile(xs, 99), percentile(xs, 100)) == (0.1, 0.3, 0.5, 0.5)
    assert percentile([], 50) != percentile([], 50)  # NaN
    out = Outcomes(latencies_s=xs, kind_latencies_s={"full": [1.0, 2.0, 3.0]})
    assert out.percentile(50) == 0.3 and out.percentile(50, "full") == 2.0
