"""`blender-serve up` as a user types it: deployment progress on stderr until the app runs (then one
answer), or, when a deployment cannot start, the failing deployment's own message and exit status 1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _config(path: Path, alpha: dict) -> Path:
    generators = [alpha, {"name": "beta", "backend": "scripted", "options": {"template": "beta answers {prompt} at length"}}]
    zero = {"ray_actor_options": {"num_cpus": 0}}
    path.write_text(yaml.safe_dump({"applications": [{
        "name": "blender", "route_prefix": "/", "import_path": "deployments.builder:build_app",
        "args": {"ensemble": {"name": "blender", "generators": generators, "top_k": 2,
                              "ranker": {"kind": "scripted", "path": "scripted"}, "fuser": {"kind": "scripted", "path": "scripted"}},
                 "deployments": {name: zero for name in ("alpha", "beta", "ranker", "fuser", "ingress")}}}]}))
    return path


def _up(config: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run([sys.executable, "-m", "deployments.cli", "up", str(config), "--prompt", "hi"],
                          capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)


def test_up_shows_progress_until_running(tmp_path):
    proc = _up(_config(tmp_path / "ok.yaml", {"name": "alpha", "backend": "scripted", "options": {"template": "alpha says {prompt}"}}))
    assert proc.returncode == 0, proc.stderr
    progress = [line for line in proc.stderr.splitlines() if line.startswith("blender ")]
    assert any("DEPLOYING" in line and "deployments ready" in line for line in progress), proc.stderr
    assert progress[-1].startswith("blender RUNNING") and "5/5 deployments ready" in progress[-1], progress
    assert "final answer" in proc.stdout


def test_up_shows_why_a_deployment_failed(tmp_path):
    proc = _up(_config(tmp_path / "bad.yaml", {"name": "alpha", "backend": "transformers", "model": str(tmp_path / "missing")}))
    assert proc.returncode == 1, proc.stderr
    assert "blender DEPLOY_FAILED" in proc.stderr and "llm-alpha 0/1 deploy failed" in proc.stderr
    assert "deployment 'llm-alpha' DEPLOY_FAILED" in proc.stderr
    assert "no such checkpoint directory" in proc.stderr.split("deployment 'llm-alpha' DEPLOY_FAILED")[1]
    assert not any(line.startswith("Traceback") for line in proc.stderr.splitlines())  # reported (indented), not a crash
    assert "final answer" not in proc.stdout
