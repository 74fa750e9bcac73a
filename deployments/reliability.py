"""Reliability under faults and load, measured: drive a served app with a bounded number of
requests and count what came back, while replicas are killed on the way.

Every request ends in exactly one outcome:

    full         200, every selected model answered, ranked (and fused when asked)
    degraded     200, but a model was dropped (``blender.errors``) or the answer is flagged
                 ``unranked`` / ``unfused`` (``blender.degraded``)
    rejected     4xx (429 counted apart as ``rate_limited``)
    unavailable  503 with ``Retry-After`` (a clear "retry later")
    bad_503      503 without ``Retry-After``
    error_5xx    500 or another 5xx: a bug
    lost         no answer within the client's timeout, or the connection broke: must stay 0

The same functions back the fault tests (``tests/serve/test_faults.py``, small counts) and the
report (``python -m deployments.reliability``, full counts, on its own local Ray; figures printed
and saved as JSON). Traffic goes to 127.0.0.1 only; every loop is bounded in count and time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import signal
import statistics
import time
from typing import Any, Awaitable, Callable, Optional

__all__ = ["Outcomes", "drive", "replicas", "replica_pids", "kill_replica", "wait_for_replicas", "classify", "CHAT"]

CHAT = "/v1/chat/completions"


@dataclasses.dataclass
class Outcomes:
    """What a batch of requests got back."""

    sent: int = 0
    full: int = 0
    degraded: int = 0
    rejected: int = 0
    rate_limited: int = 0
    unavailable: int = 0
    bad_503: int = 0
    error_5xx: int = 0
    lost: int = 0
    latencies_s: list[float] = dataclasses.field(default_factory=list)
    kind_latencies_s: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    dropped_models: dict[str, int] = dataclasses.field(default_factory=dict)
    flags: dict[str, int] = dataclasses.field(default_factory=dict)
    examples: dict[str, str] = dataclasses.field(default_factory=dict)  # outcome -> one body, to read

    @property
    def answered(self) -> int:
        return self.full + self.degraded

    def percentile(self, q: float, kind: Optional[str] = None) -> float:
        """The q-th percentile latency of every answer, or of one outcome's answers."""
        from blender_serve.testing.stats import percentile

        return percentile(self.latencies_s if kind is None else self.kind_latencies_s.get(kind, []), q)

    def summary(self) -> dict[str, Any]:
        out = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("latencies_s", "kind_latencies_s", "examples")}
        out.update(answered=self.answered, p50_s=round(self.percentile(50), 4), p99_s=round(self.percentile(99), 4),
                   max_s=round(max(self.latencies_s, default=float("nan")), 4),
                   mean_s=round(statistics.fmean(self.latencies_s), 4) if self.latencies_s else None,
                   p50_by_outcome_s={k: round(self.percentile(50, k), 4) for k in self.kind_latencies_s})
        return out


def classify(status: int, headers: Any, body: Any, out: Outcomes) -> str:
    """Count one HTTP answer in ``out``; returns the outcome's name."""
    if status == 200:
        prov = (body or {}).get("blender") or {}
        errors, degraded = prov.get("errors") or {}, prov.get("degraded") or []
        for name in errors:
            out.dropped_models[name] = out.dropped_models.get(name, 0) + 1
        for flag in degraded:
            out.flags[flag] = out.flags.get(flag, 0) + 1
        kind = "degraded" if errors or degraded else "full"
    elif status == 429:
        kind = "rate_limited"
    elif 400 <= status < 500:
        kind = "rejected"
    elif status == 503:
        kind = "unavailable" if headers.get("retry-after") else "bad_503"
    else:
        kind = "error_5xx"
    setattr(out, kind, getattr(out, kind) + 1)
    if kind not in out.examples:
        out.examples[kind] = str(body)[:500]
    return kind


async def drive(base_url: str, n: int, concurrency: int, body: Callable[[int], dict] | dict, *,
                timeout_s: float = 30.0, path: str = CHAT, headers: Optional[dict] = None,
                during: Optional[Callable[[], Awaitable[Any]]] = None, during_after: int = 0) -> Outcomes:
    """Send ``n`` requests, ``concurrency`` at a time; ``during`` runs (once) after ``during_after``
    requests have been sent, while the rest keep flowing. A request with no answer within
    ``timeout_s`` counts as lost."""
    import httpx

    out = Outcomes()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)
    started = asyncio.Event()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=timeout_s, limits=limits, headers=headers) as client:

        async def worker() -> None:
            while True:
                try:
                    i = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                out.sent += 1
                if out.sent > during_after:
                    started.set()
                t0 = time.perf_counter()
                try:
                    r = await client.post(path, json=body(i) if callable(body) else body)
                except (httpx.TimeoutException, httpx.TransportError) as exc:
                    out.lost += 1
                    out.examples.setdefault("lost", f"{type(exc).__name__}: {exc}")
                    continue
                took = time.perf_counter() - t0
                out.latencies_s.append(took)
                try:
                    payload = r.json()
                except ValueError:
                    payload = r.text
                kind = classify(r.status_code, r.headers, payload, out)
                out.kind_latencies_s.setdefault(kind, []).append(took)

        async def fault() -> None:
            await started.wait()
            await during()

        tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
        if during is not None:
            fault_task = asyncio.create_task(fault())
        await asyncio.gather(*tasks)
        if during is not None:
            started.set()
            await fault_task
    return out


# -- replicas --------------------------------------------------------------------------------

def replicas(app: str, deployment: str) -> list[str]:
    """The names of one deployment's live replica actors (namespace ``serve``)."""
    import ray

    prefix = f"SERVE_REPLICA::{app}#{deployment}#"
    return sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                  if a["namespace"] == "serve" and a["name"].startswith(prefix))


def replica_pids(app: str, deployment: str) -> list[int]:
    """Worker process ids of one deployment's replicas on this machine (their title names them)."""
    import psutil

    title = re.compile(rf"ServeReplica:{re.escape(app)}:{re.escape(deployment)}(?![\w-])")  # not llm-alpha2
    pids = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if any(title.search(part) for part in (p.info["cmdline"] or [])):
                pids.append(p.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return pids


def kill_replica(app: str, deployment: str, how: str = "ray.kill") -> str:
    """Kill one replica of a deployment: ``ray.kill`` of its actor, or ``sigkill`` of its worker
    process (this machine only). Returns what was killed."""
    import ray

    if how == "ray.kill":
        alive = replicas(app, deployment)
        if not alive:
            raise RuntimeError(f"{app}/{deployment} has no live replica to kill")
        ray.kill(ray.get_actor(alive[0], namespace="serve"), no_restart=True)
        return alive[0]
    if how == "sigkill":
        pids = replica_pids(app, deployment)
        if not pids:
            raise RuntimeError(f"no worker process of {app}/{deployment} on this machine")
        os.kill(pids[0], signal.SIGKILL)
        return f"pid {pids[0]}"
    raise ValueError(f"how must be 'ray.kill' or 'sigkill', not {how!r}")


async def wait_for_replicas(app: str, deployment: str, count: int = 1, timeout_s: float = 60.0,
                            other_than: Optional[set[str]] = None) -> float:
    """Seconds until ``count`` replicas of ``deployment`` (none named in ``other_than``) are ALIVE
    and Serve counts that many RUNNING (ready to take requests)."""
    from ray import serve

    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout_s:
        alive = [a for a in await asyncio.to_thread(replicas, app, deployment) if a not in (other_than or set())]
        status = serve.status().applications.get(app)
        running = 0
        if status is not None and deployment in status.deployments:
            running = status.deployments[deployment].replica_states.get("RUNNING", 0)
        if len(alive) >= count and running >= count:
            return time.perf_counter() - t0
        await asyncio.sleep(0.25)
    raise TimeoutError(f"{app}/{deployment}: {count} replica(s) not back within {timeout_s}s")


# -- the report ------------------------------------------------------------------------------

def _scenarios(url: str, app: str, quick: bool):
    """(name, coroutine factory) of every scenario, in order; counts shrink with ``quick``."""
    from blender_serve.testing.apps import FAULT_MODELS

    n, c = (60, 8) if quick else (200, 16)
    load_n, load_c = (200, 32) if quick else (1000, 64)
    timeout = 2.0 + 3.0 + 5.0 + 5.0

    def body(i: int, **blender) -> dict:
        return {"model": "blender", "messages": [{"role": "user", "content": f"question {i}"}], "max_tokens": 8,
                "blender": {"models": FAULT_MODELS, **blender}}

    def killing(deployment: str, how: str, before: set[str], recovered: list[float]):
        async def kill() -> None:
            kill_replica(app, deployment, how)
            recovered.append(await wait_for_replicas(app, deployment, other_than=before, timeout_s=120))
        return kill

    def policy_body(i: int) -> dict:
        return body(i, on_ranker_failure="fail" if i % 2 else "unranked")

    plan = [
        ("baseline", dict(n=n, body=body)),
        ("kill base model (ray.kill)", dict(n=n, body=body, deployment="llm-alpha", how="ray.kill")),
        ("kill base model (SIGKILL)", dict(n=n, body=body, deployment="llm-alpha", how="sigkill")),
        ("kill ranker (half fail-fast, half unranked)", dict(n=n, body=policy_body, deployment="ranker", how="ray.kill")),
        ("kill fuser", dict(n=n, body=body, deployment="fuser", how="sigkill")),
        ("kill an ingress replica (of 2)", dict(n=n, body=body, deployment="ingress", how="sigkill")),
        (f"load {load_n} requests at concurrency {load_c}", dict(n=load_n, body=body, concurrency=load_c)),
    ]
    for name, spec in plan:
        async def run(spec=spec) -> tuple[Outcomes, Optional[float]]:
            deployment, recovered = spec.get("deployment"), []
            before = set(replicas(app, deployment)) if deployment else set()
            during = killing(deployment, spec["how"], before, recovered) if deployment else None
            out = await drive(url, spec["n"], spec.get("concurrency", c), spec["body"], timeout_s=timeout,
                              during=during, during_after=spec["n"] // 5)
            return out, (recovered[0] if recovered else None)  # seconds from the kill to a new running replica
        yield name, run


def _line(name: str, out: Outcomes, extra: str = "") -> str:
    return (f"{name:46} {out.sent:5} {out.full:5} {out.degraded:5} {out.rejected + out.rate_limited:4} "
            f"{out.unavailable + out.bad_503:4} {out.error_5xx:4} {out.lost:4} {out.percentile(50):6.2f} "
            f"{out.percentile(99):6.2f} {extra}")


def main(argv: Optional[list[str]] = None) -> int:
    import argparse
    import json
    import shutil
    import tempfile
    from pathlib import Path

    parser = argparse.ArgumentParser(prog="python -m deployments.reliability", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/reliability.json", help="where the figures are saved (JSON)")
    parser.add_argument("--quick", action="store_true", help="smaller counts (a minute instead of several)")
    args = parser.parse_args(argv)

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import ray
    from ray import serve

    from blender_serve.testing import tiny_models
    from blender_serve.testing.apps import fault_app_args, free_port
    from deployments.builder import build_app

    tmp = Path(tempfile.mkdtemp(prefix="bsr-", dir="/tmp"))
    try:
        backbone = tiny_models.build_deberta_backbone(tmp / "bb")
        ranker = tiny_models.build_pairrm_original(tmp / "ranker", backbone)
        fuser = tiny_models.build_gen_fuser(tmp / "fuser")
        port = free_port()
        ray.init(num_cpus=8, include_dashboard=False, _temp_dir=str(tmp / "ray"), log_to_driver=False)
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        app = "faults"
        t0 = time.perf_counter()
        serve.run(build_app(fault_app_args(ranker, fuser)), name=app, route_prefix="/")
        print(f"app ready in {time.perf_counter() - t0:.1f}s (scripted base models, tiny real ranker and fuser)")
        url = f"http://127.0.0.1:{port}"
        report: dict[str, Any] = {"quick": args.quick, "scenarios": {}}
        header = f"{'scenario':46} {'sent':>5} {'full':>5} {'degr':>5} {'4xx':>4} {'503':>4} {'5xx':>4} {'lost':>4} {'p50 s':>6} {'p99 s':>6} replaced in"
        print(header)
        for name, run in _scenarios(url, app, args.quick):
            out, back = asyncio.run(run())
            row = out.summary()
            row["replaced_in_s"] = None if back is None else round(back, 2)
            report["scenarios"][name] = row
            print(_line(name, out, "" if back is None else f"{back:.1f}s"))
        # Overload: one ingress replica taking 4 requests at a time with 4 queued, base models taking 1 s.
        from blender_serve.testing.apps import scripted_app_args

        gens = [{"name": m, "backend": "scripted", "options": {"template": f"{m}: {{prompt}}", "latency_s": 1.0}} for m in "ab"]
        tight = scripted_app_args(ranker, fuser, generators=gens, fusion="never", deadline_s=10)
        tight["deployments"]["ingress"].update(num_replicas=1, max_ongoing_requests=4, max_queued_requests=4)
        serve.run(build_app(tight), name="tight", route_prefix="/tight")
        out = asyncio.run(drive(f"{url}/tight", 64, 64, {"model": "blender", "messages": [{"role": "user", "content": "hi"}]}))
        name = "overload: 64 at once into 4 running + 4 queued"
        report["scenarios"][name] = out.summary()
        print(_line(name, out, f"(its 503s came back in {out.percentile(50, 'unavailable'):.2f}s, p50)"))
        report["lost_total"] = sum(r["lost"] for r in report["scenarios"].values())
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2))
        print(f"lost in total: {report['lost_total']}; saved {args.out}")
        return 0 if report["lost_total"] == 0 else 1
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
