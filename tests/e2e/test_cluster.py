"""A real two-node Ray cluster on this machine, deployed with the real ``serve deploy`` CLI.

Both nodes are ``ray start --block`` processes in sessions of their own (so the test can kill a
node's whole process group, as a lost machine would vanish), each with its own temp dir and ports.
The base models are placed on the worker by a custom resource; the test kills the worker, checks
that the ingress on the head answers fast and clearly (503 + Retry-After, never 500, never past the
request's deadline), starts a new worker, and checks the ensemble answers in full again.
It prints how long deploying, degrading and recovering took.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest
import yaml

from blender_serve.testing.apps import free_port, scripted_app_args

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
MODELS = ["alpha", "beta", "gamma"]
DEADLINE_S = 2.0
SLACK_S = 3.0  # a request may take its per-model deadline plus this (ranking, fusing, HTTP hops)

pytestmark = pytest.mark.timeout(480)


def _log(msg: str) -> None:
    print(f"[cluster] {msg}", flush=True)


def _env() -> dict[str, str]:
    env = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    for var in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS"):  # they would override --address
        env.pop(var, None)
    return env


class Node:
    """One ``ray start --block`` in a session of its own: its process group is this test's to kill."""

    def __init__(self, name: str, args: list[str], workdir: Path):
        self.name = name
        self.temp_dir = tempfile.mkdtemp(prefix=f"bsc-{name[0]}-", dir="/tmp")  # short: socket paths < 107 bytes
        self.log_path = workdir / f"{name}.log"
        ports = ["--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
                 "--dashboard-agent-grpc-port", "--runtime-env-agent-port", "--metrics-export-port"]
        # No --node-ip-address: Ray resolves 127.0.0.1 to the machine's own address anyway.
        cmd = [str(BIN / "ray"), "start", "--block", "--temp-dir", self.temp_dir,
               "--object-store-memory", str(100 * 2**20), "--min-worker-port", "0", "--max-worker-port", "0",
               "--disable-usage-stats", *args]
        for flag in ports:
            cmd += [flag, str(free_port())]
        with open(self.log_path, "w") as log:
            # SIGTERM makes `ray start --block` drain its node first (30 s by default): the teardown
            # runs after `serve shutdown`, with nothing left to drain.
            env = dict(_env(), RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0")
            self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def session_pids(self) -> list[int]:
        """Every live process still in this node's session: Ray's daemons, and its workers, which the
        raylet puts in process groups of their own (so ``killpg`` alone misses them)."""
        import psutil

        out = []
        for p in psutil.process_iter():
            try:
                if os.getsid(p.pid) == self.proc.pid and p.status() != psutil.STATUS_ZOMBIE:
                    out.append(p.pid)
            except (OSError, psutil.Error):
                pass
        return out

    def kill(self, sig: int = signal.SIGTERM, wait_s: float = 10.0) -> None:
        """Signal the node's process group, wait for it, then SIGKILL anything of its session left."""
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            pass
        deadline = time.monotonic() + wait_s
        while (left := self.session_pids()) and time.monotonic() < deadline:
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.2)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def tail(self, n: int = 3000) -> str:
        return f"--- {self.name} log ---\n{self.log_path.read_text()[-n:]}"


def _wait(what: str, check, timeout_s: float, period_s: float = 1.0):
    """Poll ``check()`` until it returns something truthy; fail after ``timeout_s``."""
    deadline, last = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as exc:  # noqa: BLE001 - services come up in stages; report the last error
            last = exc
        time.sleep(period_s)
    pytest.fail(f"{what}: not within {timeout_s:.0f} s (last error: {last!r})")


def _alive_nodes(dashboard: str) -> dict[str, dict]:
    from ray.util.state import list_nodes

    return {n.node_id: n.resources_total for n in list_nodes(address=dashboard, detail=True) if n.state == "ALIVE"}


def _replica_nodes(dashboard: str) -> dict[str, list[str]]:
    """Deployment name -> node ids of its alive replica actors."""
    from ray.util.state import list_actors

    out: dict[str, list[str]] = {}
    for a in list_actors(address=dashboard, detail=True, filters=[("state", "=", "ALIVE")], limit=1000):
        if a.class_name.startswith("ServeReplica:blender:"):
            out.setdefault(a.class_name.split(":", 2)[2], []).append(a.node_id)
    return out


def _serve_apps(dashboard: str) -> dict:
    """The dashboard's Serve status (what ``serve status`` prints), per application."""
    return httpx.get(f"{dashboard}/api/serve/applications/", timeout=10).json().get("applications", {})


def _write_config(path: Path, ranker_dir, fuser_dir, http_port: int) -> None:
    generators = [{"name": m, "backend": "scripted",
                   "options": {"template": f"{m} answers: {{prompt}}", "latency_s": 0.05}} for m in MODELS]
    args = scripted_app_args(ranker_dir, fuser_dir, generators=generators, min_candidates=1, deadline_s=DEADLINE_S)
    on_head = {"ray_actor_options": {"num_cpus": 0, "resources": {"head": 0.1}}}
    args["deployments"] = {**{m: {"ray_actor_options": {"num_cpus": 0, "resources": {"llm_node": 1}}} for m in MODELS},
                           "ranker": on_head, "fuser": on_head, "ingress": on_head}
    config = {
        "proxy_location": "HeadOnly",
        "http_options": {"host": "127.0.0.1", "port": http_port},
        "applications": [{"name": "blender", "route_prefix": "/", "import_path": "deployments.builder:build_app",
                          # every node shares this machine's venv; a real cluster installs the package on each node
                          "runtime_env": {"env_vars": {"PYTHONPATH": str(ROOT)}},
                          "args": args}],
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def _chat(url: str, text: str = "hello") -> tuple[httpx.Response, float]:
    t0 = time.perf_counter()
    r = httpx.post(f"{url}/v1/chat/completions", timeout=DEADLINE_S + 60,
                   json={"model": "blender", "messages": [{"role": "user", "content": text}],
                         "max_tokens": 8, "blender": {"deadline_s": DEADLINE_S}})
    return r, time.perf_counter() - t0


def _answered_in_full(url: str) -> bool:
    r, _ = _chat(url)
    return r.status_code == 200 and sorted(c["model"] for c in r.json()["blender"]["candidates"]) == MODELS


def _serve_cli(*args: str, timeout_s: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "serve"), *args], env=_env(), capture_output=True, text=True, timeout=timeout_s)


@pytest.fixture
def cluster(tmp_path, monkeypatch):
    """A head (Serve's controller, proxy, ranker, fuser, ingress) and a list of worker nodes."""
    for var in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    gcs_port, dash_port = free_port(), free_port()
    state = {"dashboard": f"http://127.0.0.1:{dash_port}", "gcs": f"127.0.0.1:{gcs_port}", "workers": [],
             "workdir": tmp_path}
    t0 = time.perf_counter()
    state["head"] = Node("head", ["--head", "--port", str(gcs_port), "--num-cpus", "2", "--resources", '{"head": 1}',
                                  "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash_port),
                                  "--ray-client-server-port", str(free_port())], tmp_path)
    try:
        _wait("head node up", lambda: len(_alive_nodes(state["dashboard"])) == 1, 90)
        _log(f"head node up in {time.perf_counter() - t0:.1f}s")
        yield state
    finally:
        t1 = time.perf_counter()
        try:
            out = _serve_cli("shutdown", "-y", "--address", state["dashboard"], timeout_s=90)
            _log(f"serve shutdown rc={out.returncode} in {time.perf_counter() - t1:.1f}s")
        except subprocess.TimeoutExpired:
            _log("serve shutdown did not finish in 90 s; killing the nodes")
        left = {}
        for node in [*state["workers"], state["head"]]:
            t2 = time.perf_counter()
            node.kill()
            _log(f"{node.name} stopped in {time.perf_counter() - t2:.1f}s")
            if node.session_pids():
                left[node.name] = node.session_pids()
            shutil.rmtree(node.temp_dir, ignore_errors=True)
        _log(f"cluster torn down in {time.perf_counter() - t1:.1f}s")
        assert not left, f"processes left after killing the nodes: {left}"


def _start_worker(cluster) -> tuple[Node, str]:
    """A worker node joined to the head with the ``llm_node`` resource; returns it and its node id."""
    before = set(_alive_nodes(cluster["dashboard"]))
    node = Node(f"worker{len(cluster['workers'])}", ["--address", cluster["gcs"], "--num-cpus", "1",
                                                     "--resources", '{"llm_node": 10}'], cluster["workdir"])
    cluster["workers"].append(node)
    new = _wait("worker node joined", lambda: [n for n, res in _alive_nodes(cluster["dashboard"]).items()
                                               if n not in before and res.get("llm_node") == 10], 90)
    return node, new[0]


def _deploy(dashboard: str, config: Path) -> None:
    """``serve deploy`` with the real CLI, then wait (bounded) until the application is RUNNING."""
    t0 = time.perf_counter()
    out = _serve_cli("deploy", str(config), "--address", dashboard)
    assert out.returncode == 0, out.stdout + out.stderr
    _wait("application RUNNING", lambda: _serve_apps(dashboard)["blender"]["status"] == "RUNNING", 150, 2)
    _log(f"deployed (serve deploy -> RUNNING) in {time.perf_counter() - t0:.1f}s")
    status = yaml.safe_load(_serve_cli("status", "--address", dashboard).stdout)
    assert status["applications"]["blender"]["status"] == "RUNNING", status


def _check_placement(dashboard: str, llm_node: str, head: str) -> None:
    placed = _replica_nodes(dashboard)
    for m in MODELS:
        assert placed.get(f"llm-{m}") == [llm_node], (m, placed)
    for d in ("ranker", "fuser", "ingress"):
        assert placed.get(d) == [head], (d, placed)


def _degraded(url: str, dashboard: str, t_kill: float) -> None:
    """Requests after every base model is gone: fast, clear 503s (never a 500, never past the deadline)."""
    seen, t_degraded, t_noticed, fast = [], None, None, None
    for i in range(40):  # bounded: at most 40 requests and about 60 s
        sent = time.perf_counter() - t_kill
        r, dt = _chat(url, f"after loss {i}")
        since = time.perf_counter() - t_kill
        if t_noticed is not None and sent > t_noticed + 3 and r.status_code == 503:
            fast = dt  # Serve has reported the models down for a while: the ingress knows (DeploymentWatch)
        seen.append((round(since, 1), r.status_code, round(dt, 2), r.headers.get("retry-after")))
        assert r.status_code != 500, f"500 after the worker left: {r.text}"
        # Correct behaviour: each model's deadline bounds the request, so it never waits past it.
        assert dt <= DEADLINE_S + SLACK_S, f"request {i} took {dt:.1f}s with deadline_s={DEADLINE_S}: {r.status_code} {r.text}"
        if r.status_code == 503:
            err = r.json()["error"]
            assert err["type"] == "service_unavailable" and err["message"] and "errors" in err, err
            assert r.headers.get("retry-after", "").isdigit(), dict(r.headers)
            t_degraded = t_degraded or since
        deps = _serve_apps(dashboard)["blender"]["deployments"]
        if t_noticed is None and all(deps[f"llm-{m}"]["status"] != "HEALTHY" for m in MODELS):
            t_noticed = since
        if (t_degraded is not None and fast is not None and i >= 2) or since > 60:
            break
        time.sleep(0.5)
    _log(f"after the worker left: (s since kill, status, latency s, Retry-After) = {seen}")
    _log(f"time to degrade (kill -> first 503): {t_degraded}s; Serve marked the base models unhealthy after {t_noticed}s")
    assert t_degraded is not None, f"no 503 within 60 s of losing every base model: {seen}"
    # Once Serve reports the base models down, a request no longer waits out their deadline.
    assert fast is not None and fast < DEADLINE_S / 2, f"503s after Serve marked the models down took {fast}s: {seen}"
    assert r.status_code == 503, (r.status_code, r.text)
    _log(f"last 503 body: {json.dumps(r.json())[:400]}")


def _recovered(url: str, dashboard: str, t_new: float, timeout_s: float = 150) -> None:
    """Poll (bounded) until the ensemble answers with every base model again."""
    t_healthy = None
    for _ in range(int(timeout_s)):
        if t_healthy is None and all(d["status"] == "HEALTHY" for d in _serve_apps(dashboard)["blender"]["deployments"].values()):
            t_healthy = round(time.perf_counter() - t_new, 1)
        if _answered_in_full(url):
            break
        if time.perf_counter() - t_new > timeout_s:
            pytest.fail(f"not answered in full within {timeout_s:.0f} s of a new worker joining; Serve: {_serve_apps(dashboard)}")
        time.sleep(1)
    else:
        pytest.fail(f"not answered in full after {int(timeout_s)} polls")
    _log(f"time to recover (new worker start -> full answers): {time.perf_counter() - t_new:.1f}s "
         f"(Serve reported every deployment HEALTHY after {t_healthy}s)")


def test_two_node_cluster_serve_deploy_survives_worker_loss(cluster, pairrm_original, gen_fuser_dir, tmp_path):
    dashboard = cluster["dashboard"]
    t0 = time.perf_counter()
    worker, worker_id = _start_worker(cluster)
    _log(f"worker node joined in {time.perf_counter() - t0:.1f}s")
    head_id = next(n for n, res in _alive_nodes(dashboard).items() if "head" in res)
    http_port = free_port()
    url = f"http://127.0.0.1:{http_port}"
    _write_config(tmp_path / "cluster.yaml", pairrm_original, gen_fuser_dir, http_port)

    _deploy(dashboard, tmp_path / "cluster.yaml")
    _check_placement(dashboard, worker_id, head_id)
    for i in range(3):  # the ensemble answers over HTTP, every base model in the provenance
        r, dt = _chat(url, f"question {i}")
        assert r.status_code == 200, r.text
        body = r.json()
        assert sorted(c["model"] for c in body["blender"]["candidates"]) == MODELS, body["blender"]
        assert body["choices"][0]["message"]["content"], body
        _log(f"request {i}: 200 in {dt:.2f}s")

    # The worker node vanishes (SIGKILL to its process group and session, as a lost machine).
    t_kill = time.perf_counter()
    worker.kill(signal.SIGKILL)
    _log(f"worker node killed in {time.perf_counter() - t_kill:.1f}s")
    _degraded(url, dashboard, t_kill)

    # A new worker with the same resource joins: the base models come back on it.
    t_new = time.perf_counter()
    _, new_worker_id = _start_worker(cluster)
    _log(f"new worker node joined in {time.perf_counter() - t_new:.1f}s")
    _recovered(url, dashboard, t_new)
    _check_placement(dashboard, new_worker_id, head_id)
    _wait("application RUNNING again", lambda: _serve_apps(dashboard)["blender"]["status"] == "RUNNING", 60, 1)
