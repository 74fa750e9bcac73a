"""serve_config.yaml and configs/cpu.yaml validate against the builder's args without loading models."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from blender_serve.errors import InvalidInputError, UnknownModelError
from blender_serve.demo import demo_config
from deployments.builder import validate_args, validate_config_file

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "deployments.cli", *args], capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_shipped_configs_validate_with_the_command():
    out = _cli("validate", "serve_config.yaml", "configs/cpu.yaml", "configs/cpu-llama-cpp.yaml")
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("OK") == 3


def test_the_llama_cpp_demo_is_the_same_ensemble_on_another_engine():
    """configs/cpu-llama-cpp.yaml: the same three models, prompts and sampling as configs/cpu.yaml,
    read by llama.cpp from the GGUF, fused by one of them instead of an own fuser copy."""
    (cpu,) = validate_config_file(str(ROOT / "configs" / "cpu.yaml"))
    (fast,) = validate_config_file(str(ROOT / "configs" / "cpu-llama-cpp.yaml"))
    assert {g.backend for g in fast.ensemble.generators} == {"llama_cpp"}
    assert [(g.name, g.system_prompt, g.sampling) for g in fast.ensemble.generators] == \
        [(g.name, g.system_prompt, g.sampling) for g in cpu.ensemble.generators]
    assert fast.ensemble.ranker == cpu.ensemble.ranker
    assert (fast.ensemble.fuser.kind, fast.ensemble.fuser.generator) == ("generator", "smol-greedy")
    assert fast.ensemble.fuser.max_new_tokens == cpu.ensemble.fuser.max_new_tokens
    assert (fast.ensemble.top_k, fast.ensemble.fusion) == (cpu.ensemble.top_k, cpu.ensemble.fusion)


def test_production_config_shape():
    (args,) = validate_config_file(str(ROOT / "serve_config.yaml"))
    assert {g.backend for g in args.ensemble.generators} == {"vllm"} and len(args.ensemble.generators) == 3
    assert args.ensemble.fuser.kind == "seq2seq" and args.ensemble.ranker.device == "cuda"
    for name in [g.name for g in args.ensemble.generators] + ["ranker", "fuser", "ingress"]:
        assert args.options_for(name).autoscaling_config, f"{name} does not autoscale"
    assert args.options_for("ranker").ray_actor_options["num_gpus"] < 1  # a fraction: shares a card


def test_cpu_yaml_serves_the_same_ensemble_as_the_in_process_demo():
    (args,) = validate_config_file(str(ROOT / "configs" / "cpu.yaml"))
    assert args.ensemble == demo_config()


@pytest.mark.parametrize("mutate, error, match", [
    (lambda a: a["ensemble"].update(colour="blue"), InvalidInputError, r"application args is invalid: ensemble\.colour"),
    (lambda a: a["ensemble"]["generators"][0].update(backend="nope"), UnknownModelError, "unknown generator backend 'nope'"),
    (lambda a: a["ensemble"]["generators"][0]["options"].update(turbo=True), InvalidInputError, "turbo.*valid options"),
    (lambda a: a["deployments"].update(mystery={"num_replicas": 1}), InvalidInputError, r"unknown components \['mystery'\]"),
    (lambda a: a["deployments"]["ranker"].update(num_replicas=2, autoscaling_config={"max_replicas": 2}),
     InvalidInputError, "not both"),
    (lambda a: a["ensemble"].update(top_k=9), InvalidInputError, r"top_k=9 exceeds the number of generators \(3\)"),
])
def test_invalid_args_are_rejected_with_a_clear_message(mutate, error, match):
    args = yaml.safe_load((ROOT / "configs" / "cpu.yaml").read_text())["applications"][0]["args"]
    mutate(args)
    with pytest.raises(error, match=match):
        validate_args(args)


def test_validate_command_fails_on_a_bad_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("applications:\n  - name: x\n    import_path: deployments.builder:build_app\n    args: {ensemble: {generators: []}}\n")
    out = _cli("validate", str(bad))
    assert out.returncode == 1 and "INVALID" in out.stderr


def test_kuberay_manifest_carries_serve_config_verbatim():
    manifest = yaml.safe_load((ROOT / "deploy" / "kuberay-rayservice.yaml").read_text())
    assert manifest["kind"] == "RayService"
    assert yaml.safe_load(manifest["spec"]["serveConfigV2"]) == yaml.safe_load((ROOT / "serve_config.yaml").read_text())
